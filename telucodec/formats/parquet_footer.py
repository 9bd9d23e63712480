"""A Parquet file's footer and page headers, read with our own bounded Thrift decoder and checked
against the bytes the file has, before pyarrow reads anything of it.

Why not pyarrow's metadata objects: they are built lazily by accessors that may throw C++
exceptions pyarrow does not catch (a column chunk's level histogram of the wrong length aborts the
process from `RowGroupMetaData.column(i)`), and they say nothing of page headers, whose declared
decompressed sizes pyarrow allocates before it decompresses. Here a declared size that the file
cannot back raises `Damaged` with the reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from telucodec.formats import thrift_compact as tc

MAGIC = b"PAR1"
EXPANSION = 64                   # the pages read from a row group may decompress to this many times ...
SLACK = 8 * 2**20                # ... the bytes they take, plus this much (small files of text columns)
MAX_PAGE_HEADER = 2**20          # bytes (writers use a few dozen; pyarrow's own limit is 16 MB)
FIRST_READ = 2**12               # bytes read for a page header first
PAGE_DATA, PAGE_INDEX, PAGE_DICTIONARY, PAGE_DATA_V2 = range(4)
REPEATED = 2


class Damaged(ValueError):
    """What is wrong with the file (the caller names the file)."""


@dataclass
class Chunk:
    path: tuple[str, ...]
    num_values: int
    stored: int                  # total_compressed_size: the bytes of its pages, headers included
    start: int                   # where its first page (dictionary or data) starts


@dataclass
class Group:
    num_rows: int
    chunks: list[Chunk]


@dataclass
class Footer:
    num_rows: int
    leaves: list[tuple[str, ...]]                 # leaf columns in file order
    repeated: set[tuple[str, ...]] = field(default_factory=set)
    groups: list[Group] = field(default_factory=list)


_MISSING = object()


def _get(fields: Any, fid: int, kind: type, what: str, default: Any = _MISSING) -> Any:
    """Field `fid` of a decoded struct, of type `kind` (else Damaged); `default` when absent."""
    value = tc.get(fields, fid, _MISSING) if isinstance(fields, list) else _MISSING
    if value is _MISSING:
        if default is _MISSING:
            raise Damaged(f"footer: {what} missing")
        return default
    if not isinstance(value, kind) or kind is int and isinstance(value, bool):
        raise Damaged(f"footer: {what} of the wrong type")
    return value


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _schema(elements: list[Any]) -> tuple[list[tuple[str, ...]], set[tuple[str, ...]]]:
    """Leaf paths (without the root) in order, and those under a REPEATED element."""
    if not elements or not isinstance(elements[0], list):
        raise Damaged("footer: empty schema")
    leaves, repeated = [], set()
    stack: list[list] = [[_get(elements[0], 5, int, "schema root's num_children", 0), (), False]]
    for element in elements[1:]:
        while stack and stack[-1][0] == 0:
            stack.pop()
        if not stack:
            raise Damaged("footer: schema has more elements than its tree")
        stack[-1][0] -= 1
        _, parent, parent_repeated = stack[-1]
        name = _text(_get(element, 4, bytes, "schema element's name"))
        path = (*parent, name)
        is_repeated = parent_repeated or _get(element, 3, int, "repetition type", 0) == REPEATED
        children = _get(element, 5, int, "num_children", 0)
        if children < 0:
            raise Damaged("footer: a schema element with a negative number of children")
        if children:
            stack.append([children, path, is_repeated])
        else:
            leaves.append(path)
            if is_repeated:
                repeated.add(path)
    if any(entry[0] for entry in stack):
        raise Damaged("footer: schema tree has fewer elements than it declares")
    return leaves, repeated


def read_footer(f: Any, size: int) -> Footer:
    """The footer of the open file `f` of `size` bytes. Raises Damaged, or OSError from `f`."""
    if size < 12:
        raise Damaged(f"{size} bytes: too short to be a Parquet file")
    f.seek(0)
    head = f.read(4)
    f.seek(size - 8)
    tail = f.read(8)
    if head != MAGIC or len(tail) != 8 or tail[4:] != MAGIC:
        raise Damaged("not a Parquet file (no PAR1 at its start and end)")
    (length,) = struct.unpack("<I", tail[:4])
    if length > size - 12:
        raise Damaged(f"footer of {length} bytes in a file of {size}")
    f.seek(size - 8 - length)
    data = f.read(length)
    try:
        meta, _ = tc.read_struct(data)
    except tc.ThriftError as exc:
        raise Damaged(f"footer unreadable ({exc})") from exc
    leaves, repeated = _schema(_get(meta, 2, tc.Seq, "schema").values)
    footer = Footer(_get(meta, 3, int, "num_rows"), leaves, repeated)
    for group in _get(meta, 4, tc.Seq, "row_groups").values:
        chunks = []
        for chunk in _get(group, 1, tc.Seq, "row group columns").values:
            if _get(chunk, 1, bytes, "file_path", None) is not None:
                raise Damaged("a column chunk in another file (file_path): not read")
            cm = _get(chunk, 3, list, "column metadata")
            path = tuple(_text(p) for p in _get(cm, 3, tc.Seq, "path_in_schema").values)
            start = _get(cm, 9, int, "data_page_offset")
            dictionary = _get(cm, 11, int, "dictionary_page_offset", None)
            if dictionary is not None and 0 < dictionary < start:
                start = dictionary
            chunks.append(Chunk(path, _get(cm, 5, int, "num_values"), _get(cm, 7, int, "total_compressed_size"), start))
        if [c.path for c in chunks] != leaves:
            raise Damaged("a row group's column chunks do not match the schema's columns")
        footer.groups.append(Group(_get(group, 3, int, "row group num_rows"), chunks))
    check_rows(footer, size)
    return footer


def check_rows(footer: Footer, size: int) -> None:
    """Row counts the file cannot hold (every row of the audio column takes a byte at least)."""
    total = 0
    for g, group in enumerate(footer.groups):
        if not 0 <= group.num_rows <= size:
            raise Damaged(f"row group {g} declares {group.num_rows} rows in a file of {size} bytes")
        total += group.num_rows
    if total > size:
        raise Damaged(f"declares {total} rows in a file of {size} bytes")
    if footer.num_rows != total:
        raise Damaged(f"declares {footer.num_rows} rows, its row groups {total}")


def check_row_group(f: Any, size: int, footer: Footer, group: int, columns: list[str]) -> None:
    """Raise Damaged unless every page of `columns` (dotted paths) in row group `group` lies inside
    the file, the pages hold the values their chunk declares (one per row: these columns do not
    repeat), and all of them decompress to at most EXPANSION times the bytes they take, plus SLACK."""
    if not 0 <= group < len(footer.groups):
        raise Damaged(f"has no row group {group}")
    rows, stored, expanded = footer.groups[group].num_rows, 0, 0
    for column in columns:
        path = tuple(column.split("."))
        if path not in footer.leaves:
            raise Damaged(f"column '{column}' is not a leaf column")
        if path in footer.repeated:
            raise Damaged(f"column '{column}' repeats (a list), which no audio column does")
        chunk = footer.groups[group].chunks[footer.leaves.index(path)]
        name = f"row group {group}, column '{column}'"
        if not (4 <= chunk.start and 0 < chunk.stored and chunk.start + chunk.stored <= size - 8):
            raise Damaged(f"{name} lies outside the file ({chunk.stored} bytes at {chunk.start}, file of {size})")
        if chunk.num_values != rows:
            raise Damaged(f"{name} declares {chunk.num_values} values for {rows} rows")
        stored += chunk.stored
        expanded += _walk_pages(f, name, chunk.start, chunk.stored, rows)
    if expanded > EXPANSION * stored + SLACK:
        raise Damaged(f"row group {group} declares {expanded} bytes of pages stored in {stored} "
                      f"(more than {EXPANSION}x)")


def _page_header(f: Any, name: str, pos: int, end: int) -> tuple[list[tc.Field], int]:
    """The page header at `pos` and its length (a short read first: headers are small)."""
    for limit in (FIRST_READ, MAX_PAGE_HEADER):
        f.seek(pos)
        head = f.read(min(end - pos, limit))
        try:
            return tc.read_struct(head)
        except tc.ThriftError as exc:
            if limit == MAX_PAGE_HEADER or len(head) < limit:
                raise Damaged(f"{name}: page header at {pos} unreadable ({exc})") from exc
    raise AssertionError("unreachable")


def _walk_pages(f: Any, name: str, start: int, length: int, rows: int) -> int:
    """Check each page header of one column chunk; returns the sum of their decompressed sizes."""
    pos, end, values, expanded = start, start + length, 0, 0
    budget = EXPANSION * length + SLACK
    while pos < end:
        header, used = _page_header(f, name, pos, end)
        kind, size, stored = (tc.get(header, i) for i in (1, 2, 3))
        if not all(type(v) is int for v in (kind, size, stored)) or size < 0 or stored < 0:
            raise Damaged(f"{name}: page header at {pos} lacks its sizes")
        pos += used + stored
        if pos > end:
            raise Damaged(f"{name}: a page runs past the end of its column chunk")
        expanded += size
        if expanded > budget:
            raise Damaged(f"{name}: pages declare {expanded} bytes decompressed from {length}")
        if kind == PAGE_DICTIONARY:
            sub = tc.get(header, 7)
            count = tc.get(sub, 1) if isinstance(sub, list) else None
            if type(count) is not int or not 0 <= count <= size:
                raise Damaged(f"{name}: a dictionary of {count} values in {size} bytes")
        elif kind in (PAGE_DATA, PAGE_DATA_V2):
            sub = tc.get(header, 5 if kind == PAGE_DATA else 8)
            count = tc.get(sub, 1) if isinstance(sub, list) else None
            if type(count) is not int or count < 0:
                raise Damaged(f"{name}: a data page without its value count")
            if kind == PAGE_DATA_V2:
                levels = [tc.get(sub, 5, 0), tc.get(sub, 6, 0)]
                if not all(type(n) is int and 0 <= n for n in levels) or sum(levels) > stored:
                    raise Damaged(f"{name}: page levels of {levels} bytes in a page of {stored}")
            values += count
            if values > rows:
                raise Damaged(f"{name}: pages hold more values than the {rows} rows")
        elif kind != PAGE_INDEX:
            raise Damaged(f"{name}: unknown page type {kind}")
    if values != rows:
        raise Damaged(f"{name}: pages hold {values} values for {rows} rows")
    return expanded
