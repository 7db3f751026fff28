"""``pvmsi gen vectors``: language-neutral encode/decode vectors for every format (docs: "Format vectors").

Each vector is computed with, and checked against, the spec's strict codec (:mod:`pvmsi.spec.codec`):
valid ones must decode to exactly their field values and re-encode to the same bytes; invalid ones must be
rejected at exactly their field path and byte offset.  The file format is documented in
conformance/vectors/README.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..spec.codec import DecodeError, decode, encode
from ..spec.constants import group
from ..spec.formats import FORMATS
from ..spec.layout import FormatLayout, LeafField, all_layouts
from ..spec.version import VERSION_MAJOR, VERSION_MINOR

SCHEMA_VERSION = 1
GENERATOR = "pvmsi gen vectors"


@dataclass(frozen=True)
class Leaf:
    """A scalar field of a format, with what the codec allows in it."""

    path: str
    offset: int
    size: int
    signed: bool
    kind: str  # "int", "enum", "flags", "reserved" or "bytes"
    values: tuple[int, ...] = ()  # enum: the defined values
    mask: int = 0  # flags: the defined bits

    @property
    def bits(self) -> int:
        return self.size * 8

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "offset": self.offset,
            "size": self.size,
            "signed": self.signed,
            "kind": self.kind,
        }
        if self.kind == "enum":
            out["values"] = list(self.values)
        if self.kind == "flags":
            out["mask"] = self.mask
        return out


def _leaf(lf: LeafField) -> Leaf:
    f = lf.field
    if f.type == "bytes":  # an opaque byte string; its value is written as hex
        if f.reserved:
            raise NotImplementedError(f"{lf.path}: reserved byte strings have no vectors; extend pvmsi/gen/vectors.py")
        return Leaf(lf.path, lf.offset, lf.size, False, "bytes")
    if f.reserved:
        return Leaf(lf.path, lf.offset, lf.size, f.signed, "reserved")
    if f.enum:
        values = tuple(sorted(v for _, v, _ in group(f.enum).members))
        return Leaf(lf.path, lf.offset, lf.size, f.signed, "enum", values)
    if f.flags:
        mask = 0
        for _, v, _ in group(f.flags).members:
            mask |= v
        return Leaf(lf.path, lf.offset, lf.size, f.signed, "flags", mask=mask)
    return Leaf(lf.path, lf.offset, lf.size, f.signed, "int")


def leaves(lay: FormatLayout) -> list[Leaf]:
    return [_leaf(lf) for lf in lay.leaves()]


# --- valid field values -------------------------------------------------------------------------------------

Chooser = Callable[[str, int, Leaf], int]
Value = int | str  # str: the hex of a "bytes" field


def _zero(fmt: str, i: int, leaf: Leaf) -> int:
    return leaf.values[0] if leaf.kind == "enum" else 0


def _value(fmt: str, i: int, leaf: Leaf, choose: Chooser) -> Value:
    """The chosen value of ``leaf``; a byte string's is the hex of ``size`` bytes (little-endian integer)."""
    if leaf.kind != "bytes":
        return choose(fmt, i, leaf)
    if choose is _typical:
        return bytes(range(i + 1, i + 1 + leaf.size)).hex()
    number = choose(fmt, i, Leaf(leaf.path, leaf.offset, leaf.size, False, "int"))
    return (number % (1 << leaf.bits)).to_bytes(leaf.size, "little").hex()


def _typical(fmt: str, i: int, leaf: Leaf) -> int:
    if leaf.kind == "reserved":
        return 0
    if leaf.kind == "enum":
        return leaf.values[-1]
    if leaf.kind == "flags":
        return leaf.mask & -leaf.mask  # the lowest defined bit
    return -(i + 1) if leaf.signed else i + 1


def _max(fmt: str, i: int, leaf: Leaf) -> int:
    if leaf.kind == "reserved":
        return 0
    if leaf.kind == "enum":
        return leaf.values[-1]
    if leaf.kind == "flags":
        return leaf.mask
    return (1 << (leaf.bits - 1)) - 1 if leaf.signed else (1 << leaf.bits) - 1


def _min(fmt: str, i: int, leaf: Leaf) -> int:
    if leaf.kind == "int" and leaf.signed:
        return -(1 << (leaf.bits - 1))
    return _zero(fmt, i, leaf)


def _random(fmt: str, i: int, leaf: Leaf) -> int:
    """A value that depends only on the format name and the path (seeded, so deterministic)."""
    h = int.from_bytes(hashlib.sha256(f"{fmt}:{leaf.path}".encode()).digest()[:8], "little")
    if leaf.kind == "reserved":
        return 0
    if leaf.kind == "enum":
        return leaf.values[h % len(leaf.values)]
    if leaf.kind == "flags":
        return h & leaf.mask
    v = h & ((1 << leaf.bits) - 1)
    return v - (1 << leaf.bits) if leaf.signed and v >> (leaf.bits - 1) else v


VALID: tuple[tuple[str, str, Chooser], ...] = (
    ("zero", "every field zero, enums at their smallest defined value", _zero),
    ("typical", "small distinct values: field i is i+1 (signed: -(i+1)), enums last, flags lowest bit", _typical),
    ("max", "every field at its largest valid value: all ones, signed max, every defined flag", _max),
    ("min", "signed fields at their most negative value, the rest as zero (formats with signed fields)", _min),
    ("random", "seeded by sha256(format:path): every byte exercised, deterministic", _random),
)


# --- nesting helpers ----------------------------------------------------------------------------------------

_PART = re.compile(r"(\w+)(?:\[(\d+)\])?")


def _nest(flat: dict[str, Value]) -> dict[str, Any]:
    """``{"device.segment": 1}`` -> ``{"device": {"segment": 1}}`` (``x[2]`` parts become lists)."""
    root: dict[str, Any] = {}
    for path, item in flat.items():
        value = bytes.fromhex(item) if isinstance(item, str) else item
        node: Any = root
        parts = path.split(".")
        for depth, part in enumerate(parts):
            m = _PART.fullmatch(part)
            assert m is not None, path
            name, index = m.group(1), m.group(2)
            last = depth == len(parts) - 1
            if index is None:
                if last:
                    node[name] = value
                else:
                    node = node.setdefault(name, {})
                continue
            items = node.setdefault(name, [])
            while len(items) <= int(index):
                items.append(None)
            if last:
                items[int(index)] = value
            else:
                if items[int(index)] is None:
                    items[int(index)] = {}
                node = items[int(index)]
    return root


def _get(obj: Any, path: str) -> Value:
    for part in path.split("."):
        m = _PART.fullmatch(part)
        assert m is not None, path
        obj = obj[m.group(1)]
        if m.group(2) is not None:
            obj = obj[int(m.group(2))]
    return obj.hex() if isinstance(obj, bytes) else int(obj)


def _put(buf: bytearray, leaf: Leaf, value: int) -> None:
    buf[leaf.offset : leaf.offset + leaf.size] = value.to_bytes(leaf.size, "little", signed=value < 0)


# --- one format ---------------------------------------------------------------------------------------------


def _valid(lay: FormatLayout, fs: list[Leaf]) -> list[dict[str, Any]]:
    struct = FORMATS[lay.name].struct
    out = []
    for name, _doc, choose in VALID:
        if name == "min" and not any(leaf.signed and leaf.kind == "int" for leaf in fs):
            continue
        flat = {leaf.path: _value(lay.name, i, leaf, choose) for i, leaf in enumerate(fs)}
        data = encode(struct, _nest(flat))
        decoded = decode(struct, data)
        got = {leaf.path: _get(decoded, leaf.path) for leaf in fs}
        if got != flat or encode(struct, decoded) != data:
            raise AssertionError(f"{lay.name}/{name}: the codec does not round-trip {flat} (got {got})")
        out.append({"name": name, "hex": data.hex(), "fields": flat})
    return out


def _mutations(leaf: Leaf) -> list[tuple[str, int]]:
    """(label, bad value) of one field: each must make the codec reject the format at this field."""
    top = 1 << (leaf.bits - 1)
    if leaf.kind == "reserved":
        return [("low", 1), ("high", top)]
    if leaf.kind == "enum":
        undefined = [v for v in (0, leaf.values[-1] + 1, (1 << leaf.bits) - 1) if v not in leaf.values]
        return [(str(v), v) for v in dict.fromkeys(undefined)]
    if leaf.kind == "flags":
        spare = ~leaf.mask & ((1 << leaf.bits) - 1)
        bits = dict.fromkeys(b for b in (spare & -spare, top) if b & spare)
        return [(f"bit{b.bit_length() - 1}", b) for b in bits]
    return []


def _invalid(lay: FormatLayout, fs: list[Leaf], base: bytes) -> list[dict[str, Any]]:
    struct = FORMATS[lay.name].struct
    cases: list[tuple[str, bytes, Leaf, str]] = []
    for leaf in fs:
        for label, bad in _mutations(leaf):
            buf = bytearray(base)
            _put(buf, leaf, bad)
            cases.append((f"{leaf.kind}:{leaf.path}:{label}", bytes(buf), leaf, leaf.kind))
    for length in sorted({0, lay.size - 1}):
        first_cut = next(leaf for leaf in fs if leaf.offset + leaf.size > length)
        cases.append((f"short:{length}", base[:length], first_cut, "short"))
    out = []
    for name, data, leaf, reason in cases:
        try:
            decode(struct, data)
        except DecodeError as e:
            if (e.path, e.offset) != (leaf.path, leaf.offset):
                raise AssertionError(f"{lay.name}/{name}: rejected at {e.path}@{e.offset}, not {leaf.path}") from e
        else:
            raise AssertionError(f"{lay.name}/{name}: the codec accepted {data.hex()}")
        out.append({"name": name, "hex": data.hex(), "path": leaf.path, "offset": leaf.offset, "reason": reason})
    return out


def format_vectors(lay: FormatLayout) -> dict[str, Any]:
    """Every vector of one format, as the JSON object of its file."""
    fs = leaves(lay)
    valid = _valid(lay, fs)
    typical = bytes.fromhex(next(v["hex"] for v in valid if v["name"] == "typical"))
    return {
        "schema_version": SCHEMA_VERSION,
        "spec_version": {"major": VERSION_MAJOR, "minor": VERSION_MINOR},
        "format": lay.name,
        "c_name": lay.c_name,
        "size": lay.size,
        "fields": [leaf.describe() for leaf in fs],
        "valid": valid,
        "invalid": _invalid(lay, fs, typical),
    }


def dumps(obj: Any) -> str:
    """The one serialisation: sorted keys, two-space indent, ASCII, final newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def render() -> dict[str, str]:
    """Every file of the vector set, relative path -> text."""
    files: dict[str, str] = {}
    index = []
    for lay in all_layouts():
        obj = format_vectors(lay)
        text = dumps(obj)
        rel = f"formats/{lay.name}.json"
        files[rel] = text
        index.append(
            {
                "format": lay.name,
                "file": f"{lay.name}.json",
                "size": lay.size,
                "valid": len(obj["valid"]),
                "invalid": len(obj["invalid"]),
                "sha256": hashlib.sha256(text.encode()).hexdigest(),
            }
        )
    files["formats/index.json"] = dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "spec_version": {"major": VERSION_MAJOR, "minor": VERSION_MINOR},
            "generator": GENERATOR,
            "valid_kinds": [{"name": n, "doc": d} for n, d, _ in VALID],
            "invalid_reasons": ["reserved", "enum", "flags", "short"],
            "formats": index,
        }
    )
    return files


def write(out_dir: Path) -> list[Path]:
    """Write the vector set under ``out_dir``; stale ``formats/*.json`` files are removed. Returns the paths."""
    files = render()
    written = []
    fmt_dir = out_dir / "formats"
    fmt_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(fmt_dir.glob("*.json")):
        if f"formats/{stale.name}" not in files:
            stale.unlink()
    for rel, text in files.items():
        path = out_dir / rel
        path.write_text(text, encoding="ascii")
        written.append(path)
    return written
