"""Constant tables, flag bit diagrams and register-encoding diagrams, generated from spec/."""

from __future__ import annotations

from pvmsi.spec import callconv
from pvmsi.spec.constants import CONSTANT_GROUPS, ConstantGroup, Limit
from pvmsi.spec.harness_constants import HARNESS_VALUES
from pvmsi.spec.layout import all_layouts
from pvmsi.spec.version import VERSION_MAJOR, VERSION_MINOR, encode_version

from .context import Ctx, DocsError, constants_anchor
from .diagrams import BitField, bit_diagram
from .formats import field_group
from .markup import code, hx, md_text, table


def render_harness_values() -> str:
    """The fixed numbers of the harness protocol (spec appendix "Harness protocol")."""
    return table(["name", "value", "meaning"], [[code(v.name), str(v.value), md_text(v.doc)] for v in HARNESS_VALUES])


def constant_group(key: str) -> ConstantGroup:
    """The constant group ``key``; an unknown key is a :class:`DocsError`."""
    for g in CONSTANT_GROUPS:
        if g.key == key:
            return g
    raise DocsError(f"unknown constant group {key!r} (known: {', '.join(g.key for g in CONSTANT_GROUPS)})")


def value_text(group: ConstantGroup, value: int) -> str:
    """How a constant's value is written: ``1 << 3`` for a flag, hex for large enum values, decimal otherwise."""
    if group.kind == "flags":
        if value > 0 and value & (value - 1) == 0:
            return f"`1 << {value.bit_length() - 1}` ({hx(value)})"
        return hx(value)
    values = [v for _, v, _ in group.members]
    if group.kind == "enum" and min(values) >= 0 and max(values) >= 10:
        # Numbering spaces (function numbers, frame kinds) read best in hex throughout.
        return hx(value, 2) if value < 10 else f"{hx(value, 2)} ({value})"
    if 0 <= value < 10 or value < 0:
        return str(value)
    return f"{hx(value)} ({value})"


def flag_width(group: ConstantGroup) -> int:
    """Width in bits of the words holding ``group``'s flags: the widest field that carries them."""
    widths = [leaf.size * 8 for lay in all_layouts() for leaf in lay.leaves() if field_group(leaf.field) == group.key]
    if widths:
        return max(widths)
    top = max(v for _, v, _ in group.members).bit_length()
    return next(w for w in (8, 16, 32, 64) if w >= top)


def flag_diagram(group: ConstantGroup) -> str:
    """The bit diagram of a flags group: every defined bit named, every other bit reserved-zero."""
    if group.kind != "flags":
        raise DocsError(f"constant group {group.key!r} is not a flags group")
    fields = []
    for name, value, _ in group.members:
        if value <= 0 or value & (value - 1):
            raise DocsError(f"{group.key}.{name} = {value:#x} is not a single bit")
        bit = value.bit_length() - 1
        fields.append(BitField(bit, bit, name))
    width = flag_width(group)
    return bit_diagram(width, fields, f"bits of {group.c_prefix}* ({width}-bit)")


def render_constants(ctx: Ctx, key: str) -> str:
    """One group: an anchored summary line, a table of its members, and for flags a bit diagram."""
    g = constant_group(key)
    rows = [[code(name), code(g.c_name(name)), value_text(g, value), md_text(doc)] for name, value, doc in g.members]
    kind = {"enum": "enumeration", "flags": "flag bits", "value": "values"}[g.kind]
    parts = [
        f'<div class="pvmsi-constants" id="{constants_anchor(g.key)}" markdown="1">',
        "",
        f"**{code(g.key)}** ({kind}, C names {code(g.c_prefix + '*')}): {md_text(g.doc)}",
        "",
        table(["Name", "C name", "Value", "Meaning"], rows, ["l", "l", "r", "l"]),
    ]
    if g.kind == "flags":
        parts += ["", flag_diagram(g), "", "Bits not listed are reserved, must be zero (see the conventions)."]
    parts += ["", "</div>"]
    return "\n".join(parts)


def render_all_constants(ctx: Ctx) -> str:
    """Every constant group under a level-3 heading."""
    return "\n\n".join(f"### {code(g.key)}\n\n{render_constants(ctx, g.key)}" for g in CONSTANT_GROUPS)


# --- register encodings -------------------------------------------------------------------------------------


def _single_bit(value: int) -> int:
    if value <= 0 or value & (value - 1):
        raise DocsError(f"{value:#x} is not a single bit")
    return value.bit_length() - 1


def _mask_range(mask: int) -> tuple[int, int]:
    lo = (mask & -mask).bit_length() - 1
    hi = mask.bit_length() - 1
    if mask != ((1 << (hi + 1)) - 1) ^ ((1 << lo) - 1):
        raise DocsError(f"{mask:#x} is not a contiguous bit range")
    return hi, lo


def version_register() -> str:
    """The register encoding of a version, its field ranges read off :func:`encode_version`."""
    major_hi, major_lo = _mask_range(encode_version(0xFFFF, 0))
    minor_hi, minor_lo = _mask_range(encode_version(0, 0xFFFF))
    cur = encode_version(VERSION_MAJOR, VERSION_MINOR)
    fields = [
        BitField(major_hi, major_lo, "major", str(VERSION_MAJOR)),
        BitField(minor_hi, minor_lo, "minor", str(VERSION_MINOR)),
    ]
    return (
        bit_diagram(64, fields, "version register encoding")
        + f"\n\nVersion {VERSION_MAJOR}.{VERSION_MINOR} is the register value {code(hx(cur, 8))}."
    )


def x86_function_id() -> str:
    base = callconv.X86_CALL_BASE
    if base & 0xFFFF:
        raise DocsError("x86 call base has bits in 15:0")
    fields = [
        BitField(31, 16, "pvmsi call base", hx(base >> 16, 4)),
        BitField(15, 0, "function number", ""),
    ]
    return bit_diagram(64, fields, "x86-64 rax function id") + (
        f"\n\n`rax = {hx(base, 8)} | function number`; bits 63:32 are zero."
    )


def arm64_function_id() -> str:
    base = callconv.ARM64_CALL_BASE
    fast = _single_bit(callconv.ARM64_SMCCC_FAST)
    smc64 = _single_bit(callconv.ARM64_SMCCC_64)
    owner = callconv.ARM64_OWNER_VENDOR_HYP
    fn_base = callconv.ARM64_FN_BASE
    if base != (1 << fast) | (1 << smc64) | (owner << 24) | fn_base or fn_base & 0xFF or fn_base >> 16:
        raise DocsError("arm64 call base is not fast | SMC64 | owner << 24 | function base")
    fields = [
        BitField(fast, fast, "fast call", "1"),
        BitField(smc64, smc64, "SMC64", "1"),
        BitField(29, 24, "owner: vendor hypervisor", str(owner)),
        BitField(15, 8, "pvmsi range", hx(fn_base >> 8, 2)),
        BitField(7, 0, "function number", ""),
    ]
    return bit_diagram(32, fields, "arm64 SMCCC function id") + (
        f"\n\n`w0 = {hx(base, 8)} | function number` (SMCCC: bit 31 fast call, bit 30 SMC64 calling "
        f"convention, bits 29:24 owning entity {owner} = vendor-specific hypervisor service, bits 23:16 zero)."
    )


def riscv64_function_id() -> str:
    eid = callconv.RISCV_EXTENSION_ID
    fields = [
        BitField(31, 24, "experimental EID range", hx(eid >> 24, 2)),
        BitField(23, 0, "pvmsi", hx(eid & 0xFFFFFF, 6)),
    ]
    return bit_diagram(32, fields, "riscv64 SBI extension id") + (
        f"\n\n`a7 = {hx(eid, 8)}` (SBI extension id, in the experimental range 0x08000000-0x08FFFFFF; "
        f'the low 24 bits spell "PVM" in ASCII), `a6 = function number`.'
    )


def devfn_field() -> str:
    """The PCI devfn byte of a device identity (PCI's own encoding)."""
    fields = [BitField(7, 3, "device", "0..31"), BitField(2, 0, "function", "0..7")]
    return bit_diagram(8, fields, "devfn")


def subdevice_id_field() -> str:
    """The sub-device id word: a PASID of ``PASID_BITS`` bits, the rest reserved."""
    bits = int(Limit.PASID_BITS)
    fields = [BitField(bits - 1, 0, "PASID", f"0..{hx((1 << bits) - 1)}")]
    return bit_diagram(32, fields, "subdevice_id")


REGISTERS = {
    "devfn": devfn_field,
    "subdevice-id": subdevice_id_field,
    "version": version_register,
    "function-id-x86_64": x86_function_id,
    "function-id-arm64": arm64_function_id,
    "function-id-riscv64": riscv64_function_id,
}


def render_register(name: str) -> str:
    fn = REGISTERS.get(name)
    if fn is None:
        raise DocsError(f"unknown register encoding {name!r} (known: {', '.join(REGISTERS)})")
    return fn()
