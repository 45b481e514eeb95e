"""The channel between judge and candidate carries plain data only, rebuilt by exact type, and refuses
everything else; the harness turns any result-pipe content that is not one well-formed verdict into a
failed sample (reason `protocol`), never an exception. Expected values are written out by hand."""

from __future__ import annotations

import collections
import json
import math
import os
import struct

import pytest

from tasks.sandbox import channel, judge, seccomp, verdicts
from tests.sandbox_helpers import config_settings

PLAIN = [None, True, False, 0, -31, 2**100, 1.5, -0.0, float("inf"), 1 + 2j, "", "é\udc80", b"\x00\xff",
         [1, [2, (3,)]], (), {"a": {1, 2}}, frozenset({(1, "x")}), {(1, 2): [None]}, {1.5: b""}]  # fmt: skip


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_cross_unchanged_with_their_exact_types(value):
    back = channel.decode(channel.encode(value))
    assert back == value and repr(back) == repr(value)


def _sized(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack(">I", len(payload)) + payload


def test_the_encoding_is_the_documented_one():
    assert channel.encode(-31) == _sized(b"I", b"-1f")  # hex: no decimal digit limit
    assert channel.encode([None, True, "é"]) == b"L\x00\x00\x00\x03NT" + _sized(b"S", "é".encode())
    assert channel.encode(1.5) == b"D" + struct.pack(">d", 1.5)
    assert math.isnan(channel.decode(channel.encode(float("nan"))))
    assert channel.decode(_sized(b"I", b"f" * 5000)) == 16**5000 - 1


def test_subclasses_cross_as_their_builtin_values():
    class Liar(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    point = collections.namedtuple("point", "x y")
    for value, expected in [
        (Liar(3), 3),
        (collections.Counter(a=2), {"a": 2}),
        (point(1, 2), (1, 2)),
        (collections.OrderedDict(b=[Liar(1)]), {"b": [1]}),
    ]:
        back = channel.decode(channel.encode(value))
        assert back == expected and type(back) is type(expected)
        assert back != 999  # no Liar survives: the plain value compares honestly


@pytest.mark.parametrize(
    "value",
    [object(), bytearray(b"x"), lambda: 1, [1, object()], {"k": print}, range(3), iter([1])],
    ids=["object", "bytearray", "function", "nested", "dict value", "range", "iterator"],
)
def test_everything_else_is_refused(value):
    with pytest.raises(channel.NotPlainError):
        channel.encode(value)


def test_cycles_depth_and_size_are_bounded():
    cycle: list = []
    cycle.append(cycle)
    for value in (cycle, [[[[]]]] * 70_000):
        with pytest.raises(channel.NotPlainError):
            channel.encode(value)
    with pytest.raises(channel.ProtocolError, match="deeper"):
        channel.decode(b"L\x00\x00\x00\x01" * (channel.MAX_DEPTH + 1) + b"N")


_EMPTY_LIST = b"L\x00\x00\x00\x00"


@pytest.mark.parametrize(
    "data",
    [b"X", b"", _sized(b"I", b"12z"), _sized(b"I", b""), _sized(b"I", b"-"), b"D\x00", b"S\x00\x00\x00\x05ab",
     _sized(b"S", b"\xff\xfe"), b"M\x00\x00\x00\x01" + _EMPTY_LIST + b"N", b"E\x00\x00\x00\x01" + _EMPTY_LIST,
     b"NN", b"L\x7f\xff\xff\xff"],
    ids=["unknown tag", "empty", "bad int", "no digits", "sign only", "short float", "short str", "bad utf-8",
         "unhashable key", "unhashable member", "trailing bytes", "announced items missing"],
)  # fmt: skip
def test_malformed_values_are_protocol_errors(data):
    with pytest.raises(channel.ProtocolError):
        channel.decode(data)


def _framed(data: bytes) -> int:
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return read


@pytest.mark.parametrize(
    "data",
    [struct.pack(">I", 2**31), b"\x00\x00", struct.pack(">I", 10) + b"N", struct.pack(">I", 1) + b"X",
     _sized(b"", channel.encode([1])), _sized(b"", channel.encode({})), _sized(b"", channel.encode({"kind": 1}))],
    ids=["oversized", "short header", "truncated", "bad value", "not a dict", "no kind", "kind not str"],
)  # fmt: skip
def test_malformed_messages_are_protocol_errors(data):
    fd = _framed(data)
    try:
        with pytest.raises(channel.ProtocolError):
            channel.receive(fd)
    finally:
        os.close(fd)


def test_messages_round_trip_and_the_stream_ends_cleanly():
    read, write = os.pipe()
    channel.send(write, {"kind": "returned", "value": [1.5, "x"]})
    os.close(write)
    assert channel.receive(read) == {"kind": "returned", "value": [1.5, "x"]}
    assert channel.receive(read) is None
    os.close(read)


def test_the_judge_writes_its_verdict_as_json_without_the_json_module():
    verdict = {
        "status": "failed",
        "reason": "exception",
        "detail": 'a "quote" \\ \n\x00 é \udc80',
        "candidate_ended": True,
    }
    assert json.loads(judge.verdict_line(verdict).decode()) == {
        **verdict,
        "detail": 'a "quote" \\ \n\x00 é ?',
    }


ENDED = {"event": "ended", "timed_out": False, "judge": {"wait_status": 0, "cpu_s": 0.1}, "candidate": None}


@pytest.mark.parametrize(
    "lines",
    [["{not json"], ['{"status": "sandbox_error", "reason": "passed", "detail": ""}'],
     ['{"status": "passed", "reason": "timeout", "detail": ""}'], ['{"status": "passed"}'],
     ['{"status": "passed", "reason": "passed", "detail": "", "extra": 1}'],
     ['{"status": "passed", "reason": "passed", "detail": 3}'], ['{"status": "won", "reason": "passed", "detail": ""}'],
     ['{"status": "passed", "reason": "passed", "detail": ""}'] * 2, ["[1]"]],
    ids=["malformed", "forged sandbox_error", "contradictory", "missing keys", "unknown key", "wrong type",
         "unknown status", "two verdicts", "not a dict"],
)  # fmt: skip
def test_untrustworthy_verdicts_fail_the_sample_with_protocol(lines):
    report = verdicts.SandboxReport([json.dumps(ENDED)], lines, "", False, 0.1, True)
    result = verdicts.classify(report, config_settings())
    assert (result.status, result.reason) == ("failed", "protocol")


def test_the_seccomp_filter_jumps_land_on_its_returns():
    program = seccomp.instructions("x86_64")
    returns = {index for index, (code, *_) in enumerate(program) if code == 0x06}
    for index, (code, jt, jf, _) in enumerate(program):
        if code & 0x07 == 0x05:  # a jump: both targets inside the program
            assert index + 1 + jt < len(program) and index + 1 + jf < len(program)
    assert program[-3:] == [(0x06, 0, 0, 0x7FFF0000), (0x06, 0, 0, 0x50001), (0x06, 0, 0, 0x50026)]
    assert len(returns) == 4  # kill (wrong architecture), allow, EPERM, ENOSYS
