"""Building blocks for pvmsi wire formats, and the checked decoder/encoder.

Formats are construct ``Struct`` values built from the field kinds below.  Decoding is strict (spec section
"Conventions"): a short buffer, a non-zero reserved field or an unknown enum value is rejected with a
:class:`DecodeError` that names the field path and the byte offset of the offending field.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import construct as cs
from construct.core import stream_tell

# Little-endian, fixed-width field types (spec "Conventions": byte order).
u8: cs.Construct[int, int] = cs.Int8ul
u16: cs.Construct[int, int] = cs.Int16ul
u32: cs.Construct[int, int] = cs.Int32ul
u64: cs.Construct[int, int] = cs.Int64ul
s32: cs.Construct[int, int] = cs.Int32sl
s64: cs.Construct[int, int] = cs.Int64sl


if TYPE_CHECKING:  # construct-typing's generics exist for the type checker only
    _SubconBase = cs.Subconstruct[Any, Any, Any, Any]
    _AdapterBase = cs.Adapter[int, int, Any, Any]
else:
    _SubconBase = cs.Subconstruct
    _AdapterBase = cs.Adapter


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


class _FieldRejected(cs.ValidationError):
    """Raised inside construct's parse; converted to :class:`DecodeError` by :func:`decode`."""

    def __init__(self, reason: str, offset: int, path: str) -> None:
        super().__init__(reason, path=path)
        self.reason = reason
        self.offset = offset


class Reserved(_SubconBase):
    """A reserved field: must be zero on the wire (GEN-CONV-002); builds as zero when omitted.

    Wraps an integer, an ``Array`` of integers or a ``Bytes``; every element must be zero.
    """

    def __init__(self, subcon: cs.Construct[Any, Any]) -> None:
        super().__init__(subcon)
        self.flagbuildnone = True

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        offset = stream_tell(stream, path)
        value: Any = self.subcon._parsereport(stream, context, path)
        if isinstance(value, int):
            if value != 0:
                raise _FieldRejected(f"reserved field is {value:#x}, must be zero", offset, path)
        elif isinstance(value, bytes | bytearray):  # a reserved byte array: reported at its start
            if any(value):
                raise _FieldRejected("reserved field is non-zero, must be zero", offset, path)
        else:  # a reserved array of integers: reported at the first non-zero element
            sub: Any = self.subcon
            elem = sub.subcon.sizeof()
            for i, v in enumerate(value):
                if v != 0:
                    raise _FieldRejected(f"reserved field is {v:#x}, must be zero", offset + i * elem, path)
        return value

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        value = obj
        sub: Any = self.subcon
        if obj is None:
            if isinstance(sub, cs.Bytes):
                value = bytes(sub.sizeof())
            elif isinstance(sub, cs.Array):
                value = [0] * cast(int, sub.count)
            else:
                value = 0
        return self.subcon._build(value, stream, context, path)


class EnumField(_AdapterBase):
    """An integer field whose value must be a member of ``enum``; parses to the enum member."""

    def __init__(self, subcon: cs.Construct[int, int], enum_type: type[enum.IntEnum]) -> None:
        super().__init__(subcon)
        self.enum_type = enum_type

    def _parse(self, stream: Any, context: Any, path: str) -> enum.IntEnum:
        offset = stream_tell(stream, path)
        value = self.subcon._parsereport(stream, context, path)
        try:
            return self.enum_type(value)
        except ValueError:
            raise _FieldRejected(f"{value} is not a defined {self.enum_type.__name__} value", offset, path) from None

    def _encode(self, obj: Any, context: Any, path: str) -> int:
        return int(obj)

    def _decode(self, obj: Any, context: Any, path: str) -> Any:  # pragma: no cover - _parse overrides
        return self.enum_type(obj)


class ValuesOf(_SubconBase):
    """An integer field that carries constants of a group, named for the docs and bindings but *not* checked on
    decode: the spec gives such values their own rule (an unknown feature bit gets a status code from the
    hypervisor; a status or frame kind from a newer peer is still reported)."""

    def __init__(self, subcon: cs.Construct[int, int], group_type: type[enum.IntEnum] | type[enum.IntFlag]) -> None:
        super().__init__(subcon)
        self.group_type = group_type


class FlagsField(_AdapterBase):
    """A bit-set field; bits not defined by ``flags`` are reserved and must be zero (GEN-CONV-003)."""

    def __init__(self, subcon: cs.Construct[int, int], flags_type: type[enum.IntFlag]) -> None:
        super().__init__(subcon)
        self.flags_type = flags_type
        self.mask = 0
        for member in flags_type:
            self.mask |= int(member)

    def _parse(self, stream: Any, context: Any, path: str) -> enum.IntFlag:
        offset = stream_tell(stream, path)
        value = self.subcon._parsereport(stream, context, path)
        undefined = value & ~self.mask
        if undefined:
            raise _FieldRejected(
                f"reserved {self.flags_type.__name__} bits {undefined:#x} are set, must be zero", offset, path
            )
        return self.flags_type(value)

    def _encode(self, obj: Any, context: Any, path: str) -> int:
        return int(obj)

    def _decode(self, obj: Any, context: Any, path: str) -> Any:  # pragma: no cover - _parse overrides
        return self.flags_type(obj)


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
    from .layout import layout_of  # local: layout imports this module

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
    except _FieldRejected as e:
        # Name the leaf at the rejected offset (construct's own path has no array index); fall back to it.
        hit = next((lf for lf in lay.leaves() if lf.offset == e.offset), None)
        path = hit.path if hit is not None else _dotted(e.path or "")
        raise DecodeError(label, path, e.offset, e.reason) from None


def _int_range(size: int, signed: bool) -> tuple[int, int]:
    bits = size * 8
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _check_value(label: str, lay: Any, value: Any, prefix: str, strict: bool) -> None:
    """Check ``value`` against the layout ``lay`` field by field, so an error names the full dotted path."""
    from .constants import group

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
    from .layout import layout_of

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
