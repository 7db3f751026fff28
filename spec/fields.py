"""The building blocks of pvmsi wire formats (spec section "Conventions"): fixed-width little-endian integers,
reserved fields, enum and flag fields, and :func:`define`, which names a construct ``Struct`` as a format.

The formats themselves are in :mod:`pvmsi.spec.formats`; their layouts in :mod:`pvmsi.spec.layout`; the
checked decoder and encoder in :mod:`pvmsi.spec.codec`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
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


class FieldRejected(cs.ValidationError):
    """Raised inside construct's parse; :func:`pvmsi.spec.codec.decode` turns it into a ``DecodeError``."""

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
                raise FieldRejected(f"reserved field is {value:#x}, must be zero", offset, path)
        elif isinstance(value, bytes | bytearray):  # a reserved byte array: reported at its start
            if any(value):
                raise FieldRejected("reserved field is non-zero, must be zero", offset, path)
        else:  # a reserved array of integers: reported at the first non-zero element
            sub: Any = self.subcon
            elem = sub.subcon.sizeof()
            for i, v in enumerate(value):
                if v != 0:
                    raise FieldRejected(f"reserved field is {v:#x}, must be zero", offset + i * elem, path)
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
            raise FieldRejected(f"{value} is not a defined {self.enum_type.__name__} value", offset, path) from None

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
            raise FieldRejected(
                f"reserved {self.flags_type.__name__} bits {undefined:#x} are set, must be zero", offset, path
            )
        return self.flags_type(value)

    def _encode(self, obj: Any, context: Any, path: str) -> int:
        return int(obj)

    def _decode(self, obj: Any, context: Any, path: str) -> Any:  # pragma: no cover - _parse overrides
        return self.flags_type(obj)


@dataclass(frozen=True)
class FormatDef:
    """A named wire format: its construct definition plus its documentation."""

    name: str
    doc: str
    struct: Any
    area: str

    @property
    def c_name(self) -> str:
        return f"pvmsi_{self.name}"


#: Spec areas in the order the spec presents them; every format belongs to one.
AREAS: tuple[str, ...] = ("negotiation", "device", "batch", "messages", "events", "harness")

#: The attribute :func:`define` sets on a format's construct ``Struct``.
_DEF_ATTRIBUTE = "pvmsi_format"


def define(name: str, area: str, doc: str, struct: Any) -> Any:
    """Name ``struct`` as the format ``name`` of spec area ``area`` and return it for use in other formats.

    Nothing is registered here: the registry is the explicit list in :mod:`pvmsi.spec.formats`."""
    if area not in AREAS:
        raise ValueError(f"format {name}: unknown area {area}")
    if format_def(struct) is not None:
        raise ValueError(f"format {name}: this Struct is already the format {format_def(struct)}")
    setattr(struct, _DEF_ATTRIBUTE, FormatDef(name, doc, struct, area))
    return struct


def format_def(struct: Any) -> FormatDef | None:
    """The :class:`FormatDef` :func:`define` gave ``struct``, or None for any other construct."""
    fd = getattr(struct, _DEF_ATTRIBUTE, None)
    return fd if isinstance(fd, FormatDef) else None
