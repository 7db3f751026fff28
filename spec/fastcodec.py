"""Hot-path codec for the pvmsi wire formats, derived from their construct definitions.

The construct definitions (:mod:`.formats`) stay the normative source; this module reads each format's
:class:`~.layout.FormatLayout` and derives from it

* a :class:`struct.Struct` over the format's leaf fields (nested formats flattened, depth first), and
* the per-field checks of :func:`.codec.decode` (reserved zero, enum value defined, no undefined flag bit),
  compiled into one generated function per format so that a valid buffer costs one ``unpack_from`` plus one
  boolean expression.

A decoded value is a flat tuple in :attr:`FastFormat.fields` order (enum and flag fields as plain ``int``,
byte arrays as ``bytes``), or, through :meth:`FastFormat.unpack_record_from`, the format's named record
(:attr:`FastFormat.record_type`: the :mod:`.records` class of a batch format, a generated named tuple otherwise).

Invalid input raises the same :class:`~.codec.DecodeError` (format, dotted path,
byte offset, reason) as :func:`.codec.decode`, and invalid values the same :class:`~.codec.EncodeError` as
:func:`.codec.encode`: on failure the slow path re-walks the layout to find the first offending field, in the
same order construct would.  ``tests/test_fastcodec.py`` proves both agree on every format.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import construct as cs

from .codec import DecodeError, EncodeError, _check_value
from .constants import group
from .layout import FieldLayout, FormatLayout, all_layouts, format_layout, layout_of
from .records import RECORDS

#: What the hot path accepts as a buffer.
BytesLike = bytes | bytearray | memoryview
#: A decoded format: its leaf values in :attr:`FastFormat.fields` order.
Values = tuple[Any, ...]

_CODES: dict[tuple[int, bool], str] = {
    (1, False): "B",
    (2, False): "H",
    (4, False): "I",
    (8, False): "Q",
    (1, True): "b",
    (2, True): "h",
    (4, True): "i",
    (8, True): "q",
}

_namedtuple: Any = collections.namedtuple  # field names are only known at run time


@dataclass(frozen=True)
class FastLeaf:
    """One leaf field of a format with the check the strict decoder applies to it."""

    path: str
    offset: int
    size: int
    code: str
    reserved: bool
    enum_name: str | None
    enum_values: frozenset[int] | None
    flags_name: str | None
    flags_mask: int | None

    def reject_reason(self, value: Any) -> str | None:
        """Why :func:`.codec.decode` rejects ``value`` in this field (same wording), or ``None``."""
        if self.reserved:
            if isinstance(value, bytes):
                return None if not any(value) else "reserved field is non-zero, must be zero"
            if value != 0:
                return f"reserved field is {value:#x}, must be zero"
        if self.enum_values is not None and value not in self.enum_values:
            return f"{value} is not a defined {self.enum_name} value"
        if self.flags_mask is not None and value & ~self.flags_mask:
            return f"reserved {self.flags_name} bits {value & ~self.flags_mask:#x} are set, must be zero"
        return None


class BatchDecodeError(DecodeError):
    """Entry ``index`` of a batch was rejected; ``decoded`` holds the entries before it, all valid.

    ``path`` is the field path inside the entry and ``offset`` the absolute byte offset in the buffer.
    """

    def __init__(self, err: DecodeError, index: int, decoded: list[Values]) -> None:
        super().__init__(err.fmt, err.path, err.offset, err.reason)
        self.index = index
        self.decoded = decoded
        self.args = (f"entry {index}: {self.args[0]}",)


def _leaves(lay: FormatLayout) -> list[FastLeaf]:
    out: list[FastLeaf] = []
    for leaf in lay.leaves():
        f = leaf.field
        code = f"{leaf.size}s" if f.type == "bytes" else _CODES[leaf.size, f.signed]
        enum_name = flags_name = None
        enum_values: frozenset[int] | None = None
        flags_mask: int | None = None
        if f.enum is not None:
            src = group(f.enum).source
            enum_name, enum_values = src.__name__, frozenset(int(m) for m in src)
        if f.flags is not None:
            src = group(f.flags).source
            flags_name, flags_mask = src.__name__, 0
            for m in src:
                flags_mask |= int(m)
        out.append(
            FastLeaf(
                leaf.path, leaf.offset, leaf.size, code, f.reserved, enum_name, enum_values, flags_name, flags_mask
            )
        )
    return out


def _condition(leaves: Sequence[FastLeaf], var: str) -> str:
    """A Python expression over the tuple ``var`` that is true when any leaf is invalid."""
    terms: list[str] = []
    for i, leaf in enumerate(leaves):
        if leaf.reserved:
            terms.append(f"{var}[{i}]" if not leaf.code.endswith("s") else f"any({var}[{i}])")
        if leaf.enum_values is not None:
            terms.append(f"{var}[{i}] not in _E{i}")
        if leaf.flags_mask is not None:
            terms.append(f"{var}[{i}] & {~leaf.flags_mask & ((1 << (8 * leaf.size)) - 1):#x}")
    return " or ".join(terms) if terms else "False"


class FastFormat:
    """The hot-path codec of one format."""

    def __init__(self, layout: FormatLayout) -> None:
        self.layout = layout
        self.name = layout.name
        self.size = layout.size
        self.leaves: tuple[FastLeaf, ...] = tuple(_leaves(layout))
        self.fields: tuple[str, ...] = tuple(leaf.path for leaf in self.leaves)
        self.format = "<" + "".join(leaf.code for leaf in self.leaves)
        self.struct = struct.Struct(self.format)
        if self.struct.size != self.size:
            raise AssertionError(f"{self.name}: struct size {self.struct.size} != layout size {self.size}")
        self._index = {p: i for i, p in enumerate(self.fields)}
        names = [p.replace(".", "_").replace("[", "_").replace("]", "") for p in self.fields]
        record = RECORDS.get(self.name)
        if record is not None and list(getattr(record, "_fields", ())) != names:
            raise AssertionError(f"{self.name}: record {record.__name__} fields differ from the layout's {names}")
        self.record_type: Any = record if record is not None else _namedtuple(f"{self.name}_record", names)
        self.unpack_from: Callable[..., Values]
        self.unpack_record_from: Callable[..., Any]
        #: ``build(field=value, ...)``: the format's record from keyword arguments (a field not given is zero), in
        #: layout order whatever order they come in; what hot paths use to build a record by field name.
        self.build: Callable[..., Any]
        self.unpack_batch: Callable[..., list[Values]]
        self.pack: Callable[..., bytes]
        self.pack_into: Callable[..., None]
        self._compile()

    # -- generated hot paths -------------------------------------------------------------------------------------

    def _compile(self) -> None:
        ns: dict[str, Any] = {
            "_unpack_from": self.struct.unpack_from,
            "_iter_unpack": self.struct.iter_unpack,
            "_pack": self.struct.pack,
            "_pack_into": self.struct.pack_into,
            "_struct_error": struct.error,
            "_fail": self._decode_fail,
            "_short": self._short,
            "_batch_fail": self._batch_fail,
            "_encode_fail": self._encode_fail,
            "_memoryview": memoryview,
            # the record is built from the unpacked tuple as it stands (the checks above ran on it), in C
            "_new_record": tuple.__new__,
            "_Record": self.record_type,
            "SIZE": self.size,
            "N": len(self.leaves),
        }
        for i, leaf in enumerate(self.leaves):
            if leaf.enum_values is not None:
                ns[f"_E{i}"] = leaf.enum_values
        bad_t = _condition(self.leaves, "t")
        bad_v = _condition(self.leaves, "v")
        names = ", ".join(self.record_type._fields)
        keywords = ", ".join(f"{n}=0" for n in self.record_type._fields)
        src = f"""
def build(*, {keywords}):
    return _new_record(_Record, ({names},))

def unpack_from(buf, offset=0):
    try:
        t = _unpack_from(buf, offset)
    except _struct_error:
        _short(buf, offset)
    if {bad_t}:
        _fail(t, offset)
    return t

def unpack_record_from(buf, offset=0):
    try:
        t = _unpack_from(buf, offset)
    except _struct_error:
        _short(buf, offset)
    if {bad_t}:
        _fail(t, offset)
    return _new_record(_Record, t)

def unpack_batch(buf, count, offset=0):
    end = offset + count * SIZE
    if count < 0 or offset < 0 or len(buf) < end:
        _short(buf, offset, count)
    out = list(_iter_unpack(_memoryview(buf)[offset:end]))
    for t in out:
        if {bad_t}:
            _batch_fail(out, offset)
    return out

def pack(*v):
    try:
        if len(v) == N and not ({bad_v}):
            return _pack(*v)
    except (_struct_error, TypeError, IndexError):
        pass
    _encode_fail(v)

def pack_into(buf, offset, *v):
    try:
        if len(v) == N and not ({bad_v}):
            _pack_into(buf, offset, *v)
            return
    except (_struct_error, TypeError, IndexError):
        pass
    _encode_fail(v)
"""
        exec(compile(src, f"<pvmsi.fastcodec {self.name}>", "exec"), ns)
        self.unpack_from = ns["unpack_from"]
        self.unpack_record_from = ns["unpack_record_from"]
        self.build = ns["build"]
        self.unpack_batch = ns["unpack_batch"]
        self.pack = ns["pack"]
        self.pack_into = ns["pack_into"]

    # -- slow paths: exact errors --------------------------------------------------------------------------------

    def _short(self, buf: BytesLike, offset: int, count: int = 1) -> NoReturn:
        if offset < 0 or count < 0:
            raise ValueError(f"{self.name}: negative offset or count")
        avail = len(buf) - offset
        index, rem = divmod(max(avail, 0), self.size)
        if count == 1:
            index = 0
            rem = max(avail, 0)
        leaf = next(lf for lf in self.leaves if lf.offset + lf.size > rem)
        err = DecodeError(
            self.name,
            leaf.path,
            offset + index * self.size + leaf.offset,
            f"buffer is {rem} bytes, the format needs {self.size}",
        )
        if count == 1:
            raise err
        ok = list(self.struct.iter_unpack(memoryview(buf)[offset : offset + index * self.size]))
        for i, t in enumerate(ok):
            self._check(t, offset + i * self.size, i, ok)
        raise BatchDecodeError(err, index, ok)

    def unpack_record_unchecked_from(self, buf: BytesLike, offset: int = 0) -> Any:
        """The record at ``offset`` without the strict field checks (reserved fields, flag bits, enumerated values
        as they are): for code that has already reported the decoding failure and goes on to a later check."""
        return self.record_type._make(self.struct.unpack_from(buf, offset))

    def first_error(self, t: Values, offset: int = 0) -> DecodeError | None:
        """The error :func:`.codec.decode` raises for the unpacked values ``t`` at ``offset``, or ``None``."""
        for leaf, value in zip(self.leaves, t, strict=True):
            reason = leaf.reject_reason(value)
            if reason is not None:
                return DecodeError(self.name, leaf.path, offset + leaf.offset, reason)
        return None

    def _decode_fail(self, t: Values, offset: int) -> NoReturn:
        err = self.first_error(t, offset)
        if err is None:  # pragma: no cover - the generated condition and first_error agree
            raise AssertionError(f"{self.name}: fast check rejected {t!r} but no field is invalid")
        raise err

    def _check(self, t: Values, offset: int, index: int, out: list[Values]) -> None:
        err = self.first_error(t, offset)
        if err is not None:
            raise BatchDecodeError(err, index, out[:index])

    def _batch_fail(self, out: list[Values], offset: int) -> NoReturn:
        for i, t in enumerate(out):
            self._check(t, offset + i * self.size, i, out)
        raise AssertionError(f"{self.name}: fast batch check failed but no entry is invalid")  # pragma: no cover

    def _encode_fail(self, v: Sequence[Any]) -> NoReturn:
        if len(v) != len(self.leaves):
            raise EncodeError(self.name, "<value>", f"expected {len(self.leaves)} values, got {len(v)}")
        _check_value(self.name, self.layout, self.to_mapping(tuple(v)), "", True)
        raise EncodeError(self.name, "<value>", "the values are valid but do not fit the target buffer")

    # -- convenience API -----------------------------------------------------------------------------------------

    def decode(self, data: BytesLike, *, exact: bool = True) -> Values:
        """Decode ``data`` strictly, as :func:`.codec.decode` does, to a flat tuple."""
        if exact and len(data) > self.size:
            raise DecodeError(self.name, "<end>", self.size, f"{len(data) - self.size} trailing bytes after the format")
        return self.unpack_from(data, 0)

    def decode_record(self, data: BytesLike, *, exact: bool = True) -> Any:
        """Decode ``data`` to a named tuple whose attributes are the leaf paths with ``.`` replaced by ``_``."""
        if exact and len(data) > self.size:
            raise DecodeError(self.name, "<end>", self.size, f"{len(data) - self.size} trailing bytes after the format")
        return self.unpack_record_from(data, 0)

    def decode_container(self, data: BytesLike, *, exact: bool = True) -> Any:
        """Decode ``data`` to what :func:`.codec.decode` returns: a construct ``Container`` (nested for a nested
        field, a list for an array), equal to it field by field (enum and flag fields as plain ``int``)."""
        return _container(self.to_mapping(self.decode(data, exact=exact)))

    def encode(self, value: Mapping[str, Any]) -> bytes:
        """Encode a (nested) mapping as :func:`.codec.encode` does; reserved fields may be omitted."""
        try:
            flat = self.flatten(value)
        except (KeyError, TypeError, IndexError):
            _check_value(self.name, self.layout, value, "", True)
            raise
        return self.pack(*flat)

    def index(self, path: str) -> int:
        """Position of the leaf ``path`` (e.g. ``"device.bus"``) in a decoded tuple."""
        return self._index[path]

    def flatten(self, value: Mapping[str, Any]) -> Values:
        """A nested mapping (as :func:`.codec.decode` returns) as a flat tuple; missing reserved fields are 0."""
        out: list[Any] = []
        _flatten(self.layout, value, out)
        return tuple(out)

    def to_mapping(self, t: Values) -> dict[str, Any]:
        """A flat tuple as the nested mapping :func:`.codec.decode` would return (enums as plain ints)."""
        it = iter(t)
        return _unflatten(self.layout, it)

    def pack_batch(self, entries: Iterable[Sequence[Any]]) -> bytes:
        """Encode consecutive entries (each a flat value sequence)."""
        return b"".join(self.pack(*e) for e in entries)

    def __repr__(self) -> str:
        return f"FastFormat({self.name!r}, {self.format!r})"


def _flatten(lay: FormatLayout, value: Mapping[str, Any], out: list[Any]) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"{lay.name}: expected a mapping")
    for f in lay.fields:
        v = value.get(f.name)
        if v is None:
            if not f.reserved:
                raise KeyError(f.name)
            v = _zero(f)
        if f.count > 1 and f.type != "bytes" and (not isinstance(v, list | tuple) or len(v) != f.count):
            raise TypeError(f"{lay.name}.{f.name}: expected {f.count} elements")
        if f.nested is not None:
            for item in [v] if f.count == 1 else v:
                _flatten(f.nested, item, out)
        elif f.type == "bytes" or f.count == 1:
            out.append(v)
        else:
            out.extend(v)


def _container(value: Any) -> Any:
    if isinstance(value, dict):
        return cs.Container({k: _container(v) for k, v in value.items()})
    if isinstance(value, list):
        return cs.ListContainer(_container(v) for v in value)
    return value


def _zero(f: FieldLayout) -> Any:
    if f.type == "bytes":
        return bytes(f.size)
    if f.nested is not None:  # pragma: no cover - no format has a reserved nested field
        return {} if f.count == 1 else [{}] * f.count
    return 0 if f.count == 1 else [0] * f.count


def _unflatten(lay: FormatLayout, it: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in lay.fields:
        if f.nested is not None:
            items = [_unflatten(f.nested, it) for _ in range(f.count)]
            out[f.name] = items[0] if f.count == 1 else items
        elif f.type == "bytes" or f.count == 1:
            out[f.name] = next(it)
        else:
            out[f.name] = [next(it) for _ in range(f.count)]
    return out


_FAST: dict[str, FastFormat] = {}


def fast(name: str) -> FastFormat:
    """The hot-path codec of the format registered as ``name``."""
    ff = _FAST.get(name)
    if ff is None:
        ff = _FAST[name] = FastFormat(format_layout(name))
    return ff


def fast_of(fmt: Any) -> FastFormat:
    """The hot-path codec of a registered construct ``Struct``."""
    return fast(layout_of(fmt).name)


def all_fast() -> list[FastFormat]:
    """Hot-path codecs of every registered format, in :func:`.layout.all_layouts` order."""
    return [fast(lay.name) for lay in all_layouts()]


def decode_batch(name: str, buf: BytesLike, count: int, offset: int = 0) -> list[Values]:
    """Decode ``count`` consecutive entries of format ``name`` starting at ``offset`` in ``buf``.

    Raises :class:`BatchDecodeError` (a :class:`~.codec.DecodeError`) at the first invalid or missing entry.
    """
    return fast(name).unpack_batch(buf, count, offset)
