"""The checked decoder and encoder of pvmsi wire formats.

Formats are construct ``Struct`` values built from the field kinds of :mod:`pvmsi.spec.fields`.  Decoding is
strict (spec section "Conventions"): a short buffer, a non-zero reserved field or an unknown enum value is
rejected with a :class:`DecodeError` that names the field path and the byte offset of the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import construct as cs

from .constants import group
from .fields import FieldRejected
from .layout import layout_of


class DecodeError(ValueError):
    """A wire format was rejected: ``path`` is the dotted field path, ``offset`` the byte offset in the buffer."""

    def __init__(self, fmt: str, path: str, offset: int, reason: str) -> None:
        self.fmt = fmt
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(f"{fmt}.{path} at byte offset {offset}: {reason}")


class EncodeError(ValueError):
    """A value could not be encoded into a wire format; ``path`` names the field."""

    def __init__(self, fmt: str, path: str, reason: str) -> None:
        self.fmt = fmt
        self.path = path
        self.reason = reason
        super().__init__(f"{fmt}.{path}: {reason}")


def _dotted(path: str) -> str:
    """Turn construct's ``(parsing) -> a -> b`` into ``a.b``."""
    out: list[str] = []
    for part in (p.strip() for p in path.split("->")):
        # "name / sub * doc" nests two Renamed wrappers with the same name: keep one.
        if part and not part.startswith("(") and (not out or out[-1] != part):
            out.append(part)
    return ".".join(out)


def decode(fmt: Any, data: bytes | bytearray | memoryview, *, name: str | None = None, exact: bool = True) -> Any:
    """Decode ``data`` as ``fmt`` (a construct ``Struct``), strictly.

    ``exact`` requires ``len(data) == sizeof``; otherwise trailing bytes are ignored.
    """
    lay = layout_of(fmt)
    label = name or lay.name
    buf = bytes(data)
    if len(buf) < lay.size:
        leaf = next(f for f in lay.leaves() if f.offset + f.size > len(buf))
        raise DecodeError(label, leaf.path, leaf.offset, f"buffer is {len(buf)} bytes, the format needs {lay.size}")
    if exact and len(buf) > lay.size:
        raise DecodeError(label, "<end>", lay.size, f"{len(buf) - lay.size} trailing bytes after the format")
    try:
        return fmt.parse(buf)
    except FieldRejected as e:
        # Name the leaf at the rejected offset (construct's own path has no array index); fall back to it.
        hit = next((lf for lf in lay.leaves() if lf.offset == e.offset), None)
        path = hit.path if hit is not None else _dotted(e.path or "")
        raise DecodeError(label, path, e.offset, e.reason) from None


def _int_range(size: int, signed: bool) -> tuple[int, int]:
    bits = size * 8
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _check_value(label: str, lay: Any, value: Any, prefix: str, strict: bool) -> None:
    """Check ``value`` against the layout ``lay`` field by field, so an error names the full dotted path."""
    if not isinstance(value, Mapping):
        got = type(value).__name__
        raise EncodeError(label, prefix.rstrip(".") or "<value>", f"expected a mapping of fields, got {got}")
    for f in lay.fields:
        path = prefix + f.name
        if f.name not in value or value[f.name] is None:
            if f.reserved:
                continue
            raise EncodeError(label, path, "no value given for this field")
        v = value[f.name]
        if f.nested is not None:
            items = [v] if f.count == 1 else list(v)
            if len(items) != f.count:
                raise EncodeError(label, path, f"expected {f.count} elements, got {len(items)}")
            for i, item in enumerate(items):
                _check_value(label, f.nested, item, path + (f"[{i}]." if f.count > 1 else "."), strict)
            continue
        if f.type == "bytes":
            if not isinstance(v, bytes | bytearray) or len(v) != f.size:
                raise EncodeError(label, path, f"expected {f.size} bytes")
            if strict and f.reserved and any(v):
                raise EncodeError(label, path, "reserved field must be zero")
            continue
        elems = [v] if f.count == 1 else list(v)
        if len(elems) != f.count:
            raise EncodeError(label, path, f"expected {f.count} elements, got {len(elems)}")
        lo, hi = _int_range(f.elem_size, f.signed)
        for i, x in enumerate(elems):
            epath = path + (f"[{i}]" if f.count > 1 else "")
            if isinstance(x, bool) or not isinstance(x, int):
                raise EncodeError(label, epath, f"expected an integer, got {type(x).__name__}")
            if not lo <= x <= hi:
                raise EncodeError(label, epath, f"{x} is out of range for {f.type} ({lo}..{hi})")
            if not strict:
                continue
            if f.reserved and x != 0:
                raise EncodeError(label, epath, f"reserved field is {x:#x}, must be zero")
            if f.enum is not None:
                enum_type = group(f.enum).source
                if x not in {int(m) for m in enum_type}:
                    raise EncodeError(label, epath, f"{x} is not a defined {enum_type.__name__} value")
            if f.flags is not None:
                flags_type = group(f.flags).source
                mask = 0
                for m in flags_type:
                    mask |= int(m)
                if x & ~mask:
                    raise EncodeError(
                        label, epath, f"reserved {flags_type.__name__} bits {x & ~mask:#x} are set, must be zero"
                    )


def encode(fmt: Any, value: Mapping[str, Any], *, name: str | None = None, strict: bool = True) -> bytes:
    """Encode ``value`` (a mapping of field names; reserved fields may be omitted) as ``fmt``.

    Every field is checked first, so an :class:`EncodeError` names the full dotted path of the field: a missing
    field, a non-integer or an out-of-range integer always; with ``strict`` (the default) also a non-zero
    reserved field, an undefined enum value and an undefined flag bit, so that :func:`decode` accepts whatever
    :func:`encode` produces.  ``strict=False`` lets a test build such invalid input on purpose.
    """
    lay = layout_of(fmt)
    label = name or lay.name
    _check_value(label, lay, value, "", strict)
    try:
        out: bytes = fmt.build(value)
    except KeyError as e:  # pragma: no cover - _check_value reports missing fields first
        raise EncodeError(label, str(e.args[0]), "no value given for this field") from None
    except (cs.ConstructError, TypeError, ValueError) as e:  # pragma: no cover - likewise
        path = _dotted(getattr(e, "path", "") or "") or "<value>"
        raise EncodeError(label, path, str(e).splitlines()[-1] if str(e) else type(e).__name__) from None
    return out
