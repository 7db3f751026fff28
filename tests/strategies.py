"""Hypothesis strategies and example inputs derived from the format layouts (never from a hand list).

Every strategy is computed from :class:`pvmsi.spec.layout.FormatLayout`, so a new format or field is covered
without touching the tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from pvmsi.spec.codec import encode
from pvmsi.spec.constants import group
from pvmsi.spec.formats import FORMATS
from pvmsi.spec.layout import FieldLayout, FormatLayout, LeafField, all_layouts

LAYOUTS: list[FormatLayout] = all_layouts()

#: Property tests parametrised over every format run this many examples per format (the format count multiplies
#: it; PVMSI_HYPOTHESIS_PROFILE=pvmsi-thorough in conftest.py raises the default for a long run).
per_format = settings(max_examples=min(50, settings().max_examples))


def struct_of(lay: FormatLayout) -> Any:
    """The construct ``Struct`` of a layout."""
    return FORMATS[lay.name].struct


def int_range(size: int, signed: bool) -> tuple[int, int]:
    bits = 8 * size
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def enum_values(f: FieldLayout) -> list[int]:
    assert f.enum is not None
    return sorted(int(m) for m in group(f.enum).source)


def flag_bits(f: FieldLayout) -> list[int]:
    assert f.flags is not None
    return sorted(int(m) for m in group(f.flags).source)


def flag_mask(f: FieldLayout) -> int:
    return reduce(lambda a, b: a | b, flag_bits(f), 0)


def _scalar(f: FieldLayout) -> st.SearchStrategy[Any]:
    if f.type == "bytes":
        return st.just(bytes(f.size)) if f.reserved else st.binary(min_size=f.size, max_size=f.size)
    if f.reserved:
        return st.just(0)
    if f.enum is not None:
        return st.sampled_from(enum_values(f))
    if f.flags is not None:
        bits = flag_bits(f)
        return st.lists(st.sampled_from(bits), unique=True).map(lambda xs: reduce(lambda a, b: a | b, xs, 0))
    lo, hi = int_range(f.elem_size, f.signed)
    return st.integers(lo, hi)


def field_values(f: FieldLayout) -> st.SearchStrategy[Any]:
    """Valid values of one field: enum members, defined flag bits, reserved zero, in-range ints, nested formats."""
    one: st.SearchStrategy[Any] = values_for(f.nested) if f.nested is not None else _scalar(f)
    if f.count == 1 or f.type == "bytes":
        return one
    return st.lists(one, min_size=f.count, max_size=f.count)


def values_for(lay: FormatLayout) -> st.SearchStrategy[dict[str, Any]]:
    """Valid values of a whole format, as the nested mapping :func:`pvmsi.spec.codec.decode` returns."""
    return st.fixed_dictionaries({f.name: field_values(f) for f in lay.fields})


def encoded_for(lay: FormatLayout) -> st.SearchStrategy[bytes]:
    """Valid encodings of a format."""
    fmt = struct_of(lay)
    return values_for(lay).map(lambda v: encode(fmt, v))


def mutated_for(lay: FormatLayout) -> st.SearchStrategy[bytes]:
    """Buffers of the right size: random bytes, or a valid encoding with one byte overwritten."""

    def mutate(args: tuple[bytes, int, int]) -> bytes:
        data, pos, byte = args
        buf = bytearray(data)
        buf[pos % len(buf)] = byte
        return bytes(buf)

    mutated = st.tuples(encoded_for(lay), st.integers(0, lay.size - 1), st.integers(0, 255)).map(mutate)
    return st.one_of(st.binary(min_size=lay.size, max_size=lay.size), mutated, encoded_for(lay))


# -- deterministic examples --------------------------------------------------------------------------------------


def _example_scalar(f: FieldLayout, seed: int) -> Any:
    if f.type == "bytes":
        return bytes(f.size) if f.reserved else bytes((seed + i) & 0xFF for i in range(f.size))
    if f.reserved:
        return 0
    if f.enum is not None:
        vals = enum_values(f)
        return vals[seed % len(vals)]
    if f.flags is not None:
        return flag_mask(f)
    lo, hi = int_range(f.elem_size, f.signed)
    return lo + (0x1122334455667788 * (seed + 1)) % (hi - lo + 1)


def example_value(lay: FormatLayout, seed: int = 0) -> dict[str, Any]:
    """A valid, non-trivial value of ``lay`` (every non-reserved field non-zero where possible)."""
    out: dict[str, Any] = {}
    for i, f in enumerate(lay.fields):
        items = [
            example_value(f.nested, seed + i + k) if f.nested is not None else _example_scalar(f, seed + i + k)
            for k in range(1 if f.type == "bytes" else f.count)
        ]
        out[f.name] = items[0] if f.count == 1 or f.type == "bytes" else items
    return out


def minimal_value(lay: FormatLayout) -> dict[str, Any]:
    """The smallest valid value: zero everywhere except enum fields (their first member)."""
    out: dict[str, Any] = {}
    for f in lay.fields:
        one: Any
        if f.nested is not None:
            one = minimal_value(f.nested)
        elif f.type == "bytes":
            one = bytes(f.size)
        elif f.enum is not None:
            one = enum_values(f)[0]
        else:
            one = 0
        out[f.name] = one if f.count == 1 or f.type == "bytes" else [one] * f.count
    return out


def set_path(value: Mapping[str, Any], path: str, new: Any) -> dict[str, Any]:
    """A deep copy of a nested mapping with the leaf at dotted ``path`` (``a.b``, ``a[1].b``) set to ``new``."""
    head, _, rest = path.partition(".")
    name, index = head, None
    if head.endswith("]"):
        name, idx = head[:-1].split("[")
        index = int(idx)
    out = dict(value)
    if index is None:
        out[name] = set_path(out[name], rest, new) if rest else new
    else:
        items = list(out[name])
        items[index] = set_path(items[index], rest, new) if rest else new
        out[name] = items
    return out


def without_path(value: Mapping[str, Any], path: str) -> dict[str, Any]:
    """A deep copy of a nested mapping with the field at dotted ``path`` (``a.b``, ``a[1].b``) removed."""
    head, _, rest = path.partition(".")
    out = dict(value)
    if not rest:
        del out[head]
    elif head.endswith("]"):
        name, idx = head[:-1].split("[")
        items = list(out[name])
        items[int(idx)] = without_path(items[int(idx)], rest)
        out[name] = items
    else:
        out[head] = without_path(out[head], rest)
    return out


def field_paths(lay: FormatLayout, pred: Any = None) -> list[str]:
    """Dotted paths of every scalar *field* (an array of scalars once, as ``name``, not per element)."""
    out: list[str] = []
    for leaf in lay.leaves():
        if pred is not None and not pred(leaf):
            continue
        path = re.sub(r"\[\d+\]$", "", leaf.path)
        if path not in out:
            out.append(path)
    return out


def plain(value: Any) -> Any:
    """A decoded construct ``Container`` as plain dicts/ints (``_io`` and other private keys dropped)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, int):
        return int(value)
    return value


# -- invalid inputs, shared by the construct and the fastcodec error tests ----------------------------------------


@dataclass(frozen=True)
class BadInput:
    """A buffer the strict decoder must reject, and the field the error must name."""

    id: str
    fmt: str
    data: bytes
    path: str
    offset: int


def _poke(data: bytes, leaf: LeafField, value: int) -> bytes:
    buf = bytearray(data)
    lo, _ = int_range(leaf.size, leaf.field.signed)
    buf[leaf.offset : leaf.offset + leaf.size] = value.to_bytes(leaf.size, "little", signed=lo < 0)
    return bytes(buf)


def reserved_inputs(lay: FormatLayout) -> Iterator[BadInput]:
    """Every reserved leaf set to non-zero (lowest bit, highest bit), in a valid encoding."""
    base = encode(struct_of(lay), minimal_value(lay))
    for leaf in lay.leaves():
        if not leaf.field.reserved:
            continue
        if leaf.field.type == "bytes":
            buf = bytearray(base)
            buf[leaf.offset] = 1
            yield BadInput(f"{lay.name}.{leaf.path}=01..", lay.name, bytes(buf), leaf.path, leaf.offset)
            continue
        for v in (1, 1 << (8 * leaf.size - 1)):
            yield BadInput(f"{lay.name}.{leaf.path}={v:#x}", lay.name, _poke(base, leaf, v), leaf.path, leaf.offset)


def enum_inputs(lay: FormatLayout) -> Iterator[BadInput]:
    """Every enum leaf set to undefined values: zero (if undefined), just past the largest member, all ones."""
    base = encode(struct_of(lay), minimal_value(lay))
    for leaf in lay.leaves():
        if leaf.field.enum is None:
            continue
        defined = set(enum_values(leaf.field))
        lo, hi = int_range(leaf.size, leaf.field.signed)
        candidates = {0, max(defined) + 1, min(defined) - 1, hi, lo, 0x80}
        for v in sorted(c for c in candidates if lo <= c <= hi and c not in defined):
            yield BadInput(f"{lay.name}.{leaf.path}={v}", lay.name, _poke(base, leaf, v), leaf.path, leaf.offset)


def flags_inputs(lay: FormatLayout) -> Iterator[BadInput]:
    """Every flags leaf with each undefined bit set alone (on top of every defined bit)."""
    base = encode(struct_of(lay), minimal_value(lay))
    for leaf in lay.leaves():
        if leaf.field.flags is None:
            continue
        mask = flag_mask(leaf.field)
        for bit in range(8 * leaf.size):
            if mask & (1 << bit):
                continue
            v = mask | (1 << bit)
            yield BadInput(f"{lay.name}.{leaf.path}.bit{bit}", lay.name, _poke(base, leaf, v), leaf.path, leaf.offset)


def short_inputs(lay: FormatLayout) -> Iterator[BadInput]:
    """Every truncation 0..size-1 of a valid encoding; the error names the first leaf that does not fit."""
    full = encode(struct_of(lay), example_value(lay))
    for n in range(lay.size):
        leaf = next(lf for lf in lay.leaves() if lf.offset + lf.size > n)
        yield BadInput(f"{lay.name}[:{n}]", lay.name, full[:n], leaf.path, leaf.offset)


def all_bad_inputs() -> list[BadInput]:
    out: list[BadInput] = []
    for lay in LAYOUTS:
        out += [*reserved_inputs(lay), *enum_inputs(lay), *flags_inputs(lay), *short_inputs(lay)]
    return out


def out_of_range_values(lay: FormatLayout) -> Iterator[tuple[str, str, Any]]:
    """(id, leaf path, value) for every non-reserved integer leaf: one below and one above its range."""
    for leaf in lay.leaves():
        f = leaf.field
        if f.reserved or f.type == "bytes":
            continue
        lo, hi = int_range(leaf.size, f.signed)
        for v in (lo - 1, hi + 1):
            yield f"{lay.name}.{leaf.path}={v}", leaf.path, v
