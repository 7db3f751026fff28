"""The platforms' message formats, vCPU ids and vector ranges (spec "Message formats"), from spec/platforms.py."""

from __future__ import annotations

from pvmsi.spec.platforms import ARCH_TARGETS, PLATFORM_KEYS, PLATFORMS, PlatformDef, platform
from pvmsi.spec.platforms import BitField as SpecBitField

from .context import DocsError
from .diagrams import BitField, bit_diagram
from .markup import code, hx, md_text, table


def _diagram_fields(fields: tuple[SpecBitField, ...]) -> list[BitField]:
    return [
        BitField(
            f.hi,
            f.lo,
            f.name,
            "" if f.value is None else hx(f.value),
            reserved=f.name in ("reserved", "address_hi") and f.value == 0,
        )
        for f in fields
    ]


def _field_table(fields: tuple[SpecBitField, ...]) -> str:
    return table(
        ["bits", "field", "value", "meaning"],
        [[f.bits, code(f.name), "" if f.value is None else hx(f.value), md_text(f.doc)] for f in fields],
    )


def render_platform(key: str) -> str:
    """One platform: its format's address and data layouts (diagram and table), what they select, source
    validation, retarget, and its normative references."""
    if key not in PLATFORM_KEYS:
        raise DocsError(f"unknown platform {key!r} (known: {', '.join(PLATFORM_KEYS)})")
    p: PlatformDef = platform(key)
    parts = [
        f"Platform key {code(p.key)} (ICS `platform`, `--platform`), architecture {code(p.arch)}, "
        f"`message_format` = {code(p.message_format.name)} ({int(p.message_format)}).",
        "",
        bit_diagram(64, _diagram_fields(p.address), f"{p.key} message address"),
        "",
        _field_table(p.address),
        "",
        bit_diagram(32, _diagram_fields(p.data), f"{p.key} message data"),
        "",
        _field_table(p.data),
        "",
        f"- **What the write selects:** {md_text(p.selects)}",
        f"- **Source validation:** {md_text(p.source_validation)}",
        f"- **Retarget:** {md_text(p.retarget)}",
        f"- **Multi-message MSI:** {md_text(p.multi_msi)}",
        f"- **Normative references:** {'; '.join(md_text(r) for r in p.references)}.",
    ]
    return "\n".join(parts)


def render_platform_summary() -> str:
    """Every platform in one table: key, architecture, message format, what a retarget does to the pair."""
    return table(
        ["platform", "architecture", "message_format", "retarget to another vCPU", "per-vector MSI targets"],
        [
            [
                code(p.key),
                code(p.arch),
                f"{code(p.message_format.name)} ({int(p.message_format)})",
                "new pair, REWRITE set" if p.retarget_changes_pair else "pair kept (in place)",
                "yes" if p.per_vector_targets else "no: the block moves whole",
            ]
            for p in PLATFORMS
        ],
    )


def render_arch_targets() -> str:
    """What ``vcpu`` and ``vector`` name on each architecture (HV-ALLOC-006)."""
    return table(
        ["architecture", "vcpu is", "vector is", "range", "every hypervisor accepts", "upper end"],
        [
            [
                code(a.arch),
                md_text(a.vcpu_id),
                md_text(a.vector_name),
                f"{a.vector_min} .. {a.vector_max}",
                f"{a.vector_min} .. {a.vector_max_guaranteed}",
                md_text(a.vector_limit),
            ]
            for a in ARCH_TARGETS.values()
        ],
    )
