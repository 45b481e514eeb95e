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

from tasks.sandbox import channel, seccomp, verdicts
from tests.sandbox_helpers import config_settings

PLAIN = [None, True, False, 0, -31, 2**100, 1.5, -0.0, float("inf"), 1 + 2j, "", "é\udc80", b"\x00\xff",
         [1, [2, (3,)]], (), {"a": {1, 2}}, frozenset({(1, "x")}), {(1, 2): [None]}, {1.5: b""}]  # fmt: skip


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_cross_unchanged_with_their_exact_types(value):
    back = channel.decode(json.loads(json.dumps(channel.encode(value))))
    assert back == value and repr(back) == repr(value)


def test_nan_and_big_ints_cross():
    assert math.isnan(channel.decode(channel.encode(float("nan"))))
    assert channel.encode(-31) == ["i", "-1f"]
    assert channel.decode(["i", "f" * 5000]) == 16**5000 - 1  # beyond the decimal conversion limit


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
        assert back != 999 or expected == 999  # no Liar survives: the plain value compares honestly


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
    deep: list = ["n"]
    for _ in range(channel.MAX_DEPTH + 1):
        deep = ["l", [deep]]
    with pytest.raises(channel.ProtocolError, match="deeper"):
        channel.decode(deep)


@pytest.mark.parametrize(
    "node",
    [["Liar"], "s", [], ["i", "12z"], ["i", 12], ["b", 1], ["f", "xyz"], ["s", "a", "b"], ["d", [[["l", []], ["n"]]]],
     ["S", [["l", []]]], ["d", [["n"]]], ["y", "0"], ["l", "abc"], [1, 2]],
    ids=repr,
)  # fmt: skip
def test_malformed_values_are_protocol_errors(node):
    with pytest.raises(channel.ProtocolError):
        channel.decode(node)


def _framed(data: bytes) -> int:
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return read


@pytest.mark.parametrize(
    "data",
    [struct.pack(">I", 2**31), b"\x00\x00", struct.pack(">I", 10) + b"{}", struct.pack(">I", 3) + b"{x}",
     struct.pack(">I", 2) + b"[]", struct.pack(">I", 2) + b"{}", struct.pack(">I", 4000) + b"[" * 4000],
    ids=["oversized", "short header", "truncated", "not json", "not a dict", "no kind", "deep"],
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
    channel.send(write, {"kind": "returned", "value": channel.encode([1.5, "x"])})
    os.close(write)
    assert channel.receive(read) == {
        "kind": "returned",
        "value": ["l", [["f", "0x1.8000000000000p+0"], ["s", "x"]]],
    }
    assert channel.receive(read) is None
    os.close(read)


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
    result = verdicts.classify([json.dumps(ENDED)], lines, False, 0.1, True, "", config_settings())
    assert (result.status, result.reason) == ("failed", "protocol")


def test_the_seccomp_filter_jumps_land_on_its_returns():
    program = seccomp.instructions("x86_64")
    returns = {index for index, (code, *_) in enumerate(program) if code == 0x06}
    for index, (code, jt, jf, _) in enumerate(program):
        if code & 0x07 == 0x05:  # a jump: both targets inside the program
            assert index + 1 + jt < len(program) and index + 1 + jf < len(program)
    assert program[-3:] == [(0x06, 0, 0, 0x7FFF0000), (0x06, 0, 0, 0x50001), (0x06, 0, 0, 0x50026)]
    assert len(returns) == 4  # kill (wrong architecture), allow, EPERM, ENOSYS
