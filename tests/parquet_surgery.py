"""Rewrite single fields of a real Parquet file: any integer of its footer (row counts, sizes,
offsets, types) or of any page header (sizes, value counts), re-encoded with Thrift's compact
protocol; the file around a rewritten page header is moved so that every offset still points
where it did. Corrupt files for tests, made from the real writer's output."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from telucodec.formats import thrift_compact as tc

MAGIC = b"PAR1"


@dataclass
class Page:
    pos: int           # where its header starts
    size: int          # header bytes
    header: list       # its fields
    group: int
    column: int


def footer_of(data: bytes) -> tuple[list, int]:
    """(FileMetaData fields, where the footer starts)."""
    (length,) = struct.unpack("<I", data[-8:-4])
    start = len(data) - 8 - length
    fields, _ = tc.read_struct(data, start)
    return fields, start


def _chunks(footer: list):
    for g, group in enumerate(tc.get(footer, 4).values):
        for c, chunk in enumerate(tc.get(group, 1).values):
            yield g, c, group, chunk, tc.get(chunk, 3)


def pages_of(data: bytes) -> list[Page]:
    footer, _ = footer_of(data)
    pages = []
    for g, c, _, _, meta in _chunks(footer):
        start = tc.get(meta, 9)
        dictionary = tc.get(meta, 11)
        if dictionary and 0 < dictionary < start:
            start = dictionary
        pos, end = start, start + tc.get(meta, 7)
        while pos < end:
            header, after = tc.read_struct(data, pos)
            pages.append(Page(pos, after - pos, header, g, c))
            pos = after + tc.get(header, 3)
    return pages


def int_paths(fields: list, prefix: tuple = ()) -> list[tuple]:
    """The path (indices into fields and lists) of every integer inside a struct."""
    out = []
    for i, f in enumerate(fields):
        out += _int_paths_value(f.type, f.value, prefix + (i,))
    return out


def _int_paths_value(kind: int, value, prefix: tuple) -> list[tuple]:
    if kind in (tc.BYTE, tc.I16, tc.I32, tc.I64):
        return [prefix]
    if kind == tc.STRUCT:
        return int_paths(value, prefix)
    if kind in (tc.LIST, tc.SET):
        out = []
        for j, v in enumerate(value.values):
            out += _int_paths_value(value.elem_type, v, prefix + (j,))
        return out
    return []


def set_int(fields: list, path: tuple, value: int) -> None:
    """Set the integer at `path` (from `int_paths`)."""
    node, kind = fields, tc.STRUCT
    for step in path[:-1]:
        if kind == tc.STRUCT:
            kind, node = node[step].type, node[step].value
        else:
            kind, node = node.elem_type, node.values[step]
    last = path[-1]
    if kind == tc.STRUCT:
        node[last].value = value
    else:
        node.values[last] = value


def get_int(fields: list, path: tuple) -> int:
    node, kind = fields, tc.STRUCT
    for step in path:
        if kind == tc.STRUCT:
            kind, node = node[step].type, node[step].value
        else:
            kind, node = node.elem_type, node.values[step]
    return node


def with_footer(data: bytes, footer: list) -> bytes:
    """The file with its footer replaced by `footer` (encoded)."""
    _, start = footer_of(data)
    body = tc.write_struct(footer)
    return data[:start] + body + struct.pack("<I", len(body)) + MAGIC


def with_page_header(data: bytes, page: Page, header: list) -> bytes:
    """The file with one page header replaced; later offsets in the footer moved to match."""
    footer, _ = footer_of(data)
    new = tc.write_struct(header)
    delta = len(new) - page.size
    for g, c, _group, chunk, meta in _chunks(footer):
        for f in meta:
            if f.id in (9, 10, 11) and isinstance(f.value, int) and f.value > page.pos:
                f.value += delta
            if f.id == 7 and (g, c) == (page.group, page.column):
                f.value += delta
        for f in chunk:
            if f.id in (2, 4, 6) and isinstance(f.value, int) and f.value > page.pos:
                f.value += delta
    for g, group in enumerate(tc.get(footer, 4).values):
        for f in group:
            if f.id == 5 and isinstance(f.value, int) and f.value > page.pos:
                f.value += delta
            if f.id == 6 and g == page.group:
                f.value += delta
    moved = data[: page.pos] + new + data[page.pos + page.size:]
    return with_footer(moved, footer)


def set_field(fields: list, ids: list[int], value: int) -> None:
    """Set the value reached by following field ids (a list field's next entry is an index into it),
    e.g. `[4, 0, 3]`: FileMetaData.row_groups[0].num_rows."""
    node, steps = fields, list(ids)
    while True:
        fid = steps.pop(0)
        field = next(f for f in node if f.id == fid)
        if not steps:
            field.value = value
            return
        node = field.value.values[steps.pop(0)] if field.type in (tc.LIST, tc.SET) else field.value
