"""Thrift's compact protocol, as Parquet stores its footer and page headers in it: a decoder that
never allocates more than the bytes it is given (a list's declared size is checked against the
bytes left before any element is read; nesting is limited), and the matching encoder (tests and
the fuzzer's seeds rewrite fields of real files with it).

A struct decodes to a list of `Field(id, type, value)` in file order; a list or set to
`Seq(elem_type, values)`; a map to `Seq(key_type << 4 | value_type, [(key, value), ...])`;
integers to int, doubles to float, binary to bytes, booleans to bool.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

STOP, TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)
MAX_DEPTH = 64


class ThriftError(ValueError):
    """The bytes are not a well-formed compact-protocol value."""


@dataclass
class Field:
    id: int
    type: int
    value: Any


@dataclass
class Seq:
    elem_type: int
    values: list[Any]


class Reader:
    def __init__(self, data: bytes | memoryview, pos: int = 0):
        self.data, self.pos = memoryview(data), pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ThriftError("ends inside a value")
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        value = shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ThriftError("varint longer than 64 bits")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ThriftError(f"declares {n} bytes where {len(self.data) - self.pos} are left")
        self.pos += n
        return bytes(self.data[self.pos - n: self.pos])

    def value(self, kind: int, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ThriftError(f"nested deeper than {MAX_DEPTH}")
        if kind in (TRUE, FALSE):  # a boolean inside a list: one byte of its own
            return self.byte() == TRUE
        if kind == BYTE:
            b = self.byte()
            return b - 256 if b > 127 else b
        if kind in (I16, I32, I64):
            return self.zigzag()
        if kind == DOUBLE:
            return struct.unpack("<d", self.take(8))[0]
        if kind == BINARY:
            return self.take(self.varint())
        if kind in (LIST, SET):
            head = self.byte()
            size, elem = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            if size > len(self.data) - self.pos:  # every element takes a byte at least
                raise ThriftError(f"a list of {size} elements in {len(self.data) - self.pos} bytes")
            return Seq(elem, [self.value(elem, depth + 1) for _ in range(size)])
        if kind == MAP:
            size = self.varint()
            if size == 0:
                return Seq(0, [])
            if 2 * size > len(self.data) - self.pos:
                raise ThriftError(f"a map of {size} entries in {len(self.data) - self.pos} bytes")
            types = self.byte()
            return Seq(types, [(self.value(types >> 4, depth + 1), self.value(types & 0x0F, depth + 1))
                               for _ in range(size)])
        if kind == STRUCT:
            return self.struct(depth + 1)
        raise ThriftError(f"unknown type {kind}")

    def struct(self, depth: int = 0) -> list[Field]:
        fields, last = [], 0
        while True:
            head = self.byte()
            kind = head & 0x0F
            if kind == STOP:
                return fields
            last = last + (head >> 4) if head >> 4 else self.zigzag()
            value = kind == TRUE if kind in (TRUE, FALSE) else self.value(kind, depth)
            fields.append(Field(last, kind, value))


def read_struct(data: bytes | memoryview, pos: int = 0) -> tuple[list[Field], int]:
    """(the struct at `pos`, the position after it). Raises ThriftError."""
    reader = Reader(data, pos)
    try:
        return reader.struct(), reader.pos
    except RecursionError as exc:
        raise ThriftError("nested too deep") from exc


def get(fields: list[Field], fid: int, default: Any = None) -> Any:
    return next((f.value for f in fields if f.id == fid), default)


# ---- encoding ----------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append(n & 0x7F | 0x80)
        n >>= 7


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _encode_value(kind: int, value: Any) -> bytes:
    if kind in (TRUE, FALSE):
        return bytes([TRUE if value else FALSE])
    if kind == BYTE:
        return bytes([value & 0xFF])
    if kind in (I16, I32, I64):
        return _zigzag(value)
    if kind == DOUBLE:
        return struct.pack("<d", value)
    if kind == BINARY:
        return _varint(len(value)) + bytes(value)
    if kind in (LIST, SET):
        n = len(value.values)
        head = bytes([n << 4 | value.elem_type]) if n < 15 else bytes([0xF0 | value.elem_type]) + _varint(n)
        return head + b"".join(_encode_value(value.elem_type, v) for v in value.values)
    if kind == MAP:
        if not value.values:
            return b"\x00"
        kt, vt = value.elem_type >> 4, value.elem_type & 0x0F
        return (_varint(len(value.values)) + bytes([value.elem_type])
                + b"".join(_encode_value(kt, k) + _encode_value(vt, v) for k, v in value.values))
    if kind == STRUCT:
        return write_struct(value)
    raise ThriftError(f"unknown type {kind}")


def write_struct(fields: list[Field]) -> bytes:
    """The compact encoding of `fields` (ids in the order given)."""
    out, last = bytearray(), 0
    for f in fields:
        kind = (TRUE if f.value else FALSE) if f.type in (TRUE, FALSE) else f.type
        delta = f.id - last
        out += bytes([delta << 4 | kind]) if 0 < delta <= 15 else bytes([kind]) + _zigzag(f.id)
        if kind not in (TRUE, FALSE):
            out += _encode_value(kind, f.value)
        last = f.id
    return bytes(out + b"\x00")
