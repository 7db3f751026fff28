"""Format registry and layout introspection: the byte layout of every format, read off its construct definition.

Every generated artefact (the JSON dump, the docs tables and bit diagrams, the C header, the vectors) uses
:class:`FormatLayout`, so all of them describe exactly what the construct definition parses.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import construct as cs

from .constants import group_of
from .fields import EnumField, FlagsField, Reserved, ValuesOf, format_def
from .formats import FORMATS

_SCALARS: dict[str, tuple[str, int, bool]] = {
    "<B": ("u8", 1, False),
    "<H": ("u16", 2, False),
    "<I": ("u32", 4, False),
    "<L": ("u32", 4, False),
    "<l": ("u32", 4, True),
    "<Q": ("u64", 8, False),
    "<b": ("u8", 1, True),
    "<h": ("u16", 2, True),
    "<i": ("u32", 4, True),
    "<q": ("u64", 8, True),
}


@dataclass(frozen=True)
class FieldLayout:
    """One field of a format at its byte offset."""

    name: str
    offset: int
    size: int
    type: str
    count: int
    reserved: bool
    signed: bool
    doc: str
    enum: str | None = None
    flags: str | None = None
    nested: FormatLayout | None = None
    #: Constant group whose values the field carries without a decode check (codec.ValuesOf).
    values: str | None = None

    @property
    def c_name(self) -> str:
        return self.name

    @property
    def elem_size(self) -> int:
        return self.size // self.count


@dataclass(frozen=True)
class LeafField:
    """A scalar field anywhere inside a format, with its dotted path and absolute offset."""

    path: str
    offset: int
    size: int
    field: FieldLayout


@dataclass(frozen=True)
class FormatLayout:
    """The layout of one registered format."""

    name: str
    c_name: str
    doc: str
    area: str
    size: int
    alignment: int
    fields: tuple[FieldLayout, ...] = field(default_factory=tuple)

    def leaves(self, prefix: str = "", base: int = 0) -> Iterator[LeafField]:
        """Every scalar (or byte-array) field, depth first, with absolute offsets."""
        for f in self.fields:
            if f.type == "bytes":
                # A byte array is one leaf: the whole field (its count is its length, not an element count).
                yield LeafField(f"{prefix}{f.name}", base + f.offset, f.size, f)
                continue
            for i in range(f.count):
                path = f"{prefix}{f.name}" + (f"[{i}]" if f.count > 1 else "")
                off = base + f.offset + i * f.elem_size
                if f.nested is not None:
                    yield from f.nested.leaves(path + ".", off)
                else:
                    yield LeafField(path, off, f.elem_size, f)

    def field(self, name: str) -> FieldLayout:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name}")


def _unwrap(sc: Any) -> tuple[Any, str]:
    """Strip construct's ``Renamed`` wrappers, keeping the first non-empty doc."""
    doc = ""
    while isinstance(sc, cs.Renamed):
        doc = doc or (sc.docs or "")
        sc = sc.subcon
    return sc, doc


def _field(name: str, sc: Any, doc: str, offset: int) -> FieldLayout:
    reserved = False
    enum_key: str | None = None
    flags_key: str | None = None
    count = 1
    if isinstance(sc, Reserved):
        reserved, sc = True, sc.subcon
    if isinstance(sc, cs.Array):
        if not isinstance(sc.count, int):
            raise TypeError(f"field {name}: array count must be a constant")
        count, sc = sc.count, sc.subcon
    values_key: str | None = None
    if isinstance(sc, ValuesOf):
        values_key, sc = group_of(sc.group_type).key, sc.subcon
    if isinstance(sc, EnumField):
        enum_key, sc = group_of(sc.enum_type).key, sc.subcon
    elif isinstance(sc, FlagsField):
        flags_key, sc = group_of(sc.flags_type).key, sc.subcon
    sc, _ = _unwrap(sc)
    if isinstance(sc, cs.FormatField):
        typ, size, signed = _SCALARS[sc.fmtstr]
        return FieldLayout(
            name, offset, size * count, typ, count, reserved, signed, doc, enum_key, flags_key, values=values_key
        )
    if isinstance(sc, cs.Bytes):
        if not isinstance(sc.length, int):
            raise TypeError(f"field {name}: byte length must be a constant")
        n = sc.length
        return FieldLayout(name, offset, n, "bytes", n, reserved, False, doc)
    if isinstance(sc, cs.Struct) and format_def(sc) is not None:
        nested = layout_of(sc)
        return FieldLayout(name, offset, nested.size * count, nested.name, count, reserved, False, doc, nested=nested)
    raise TypeError(f"field {name}: unsupported construct {type(sc).__name__}")


_CACHE: dict[int, FormatLayout] = {}


def layout_of(struct: Any) -> FormatLayout:
    """The layout of a registered format's construct ``Struct``."""
    key = id(struct)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    fd = format_def(struct)
    if fd is None:
        raise KeyError("not a registered pvmsi format")
    fields: list[FieldLayout] = []
    offset = 0
    for sub in struct.subcons:
        inner, doc = _unwrap(sub)
        name = sub.name
        if not name:
            raise TypeError(f"{fd.name}: every field must be named")
        f = _field(name, inner, doc, offset)
        fields.append(f)
        offset += f.size
    align = max((f.nested.alignment if f.nested else (f.elem_size if f.type != "bytes" else 1)) for f in fields)
    lay = FormatLayout(fd.name, fd.c_name, fd.doc, fd.area, offset, align, tuple(fields))
    if offset != struct.sizeof():
        raise AssertionError(f"{fd.name}: layout size {offset} != construct sizeof {struct.sizeof()}")
    _CACHE[key] = lay
    return lay


def format_layout(name: str) -> FormatLayout:
    """The layout of the format registered as ``name``."""
    return layout_of(FORMATS[name].struct)


def all_layouts() -> list[FormatLayout]:
    """Layouts of every registered format, in definition order."""
    return [layout_of(fd.struct) for fd in FORMATS.values()]
