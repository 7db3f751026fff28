"""The C header's message-format section: each platform's address and data bit fields and each architecture's
vector range (spec "Message formats", spec/platforms.py)."""

from __future__ import annotations

from pvmsi.spec.platforms import ARCH_TARGETS, PLATFORMS

from .c_common import comment


def message_formats() -> list[str]:
    """``#define``s of every platform format's fields (``_SHIFT``, ``_MASK``, ``_VALUE`` for fixed ones) and of
    the vector ranges (``PVMSI_VECTOR_MIN_<ARCH>`` ...)."""
    out = ["", *comment('Message formats: bit fields of the pairs of each platform (spec "Message formats").')]
    for p in PLATFORMS:
        out += comment(f"{p.title} ({p.key}, {p.arch}): PVMSI_MSGFMT_{p.message_format.name}.")
        for part, fields, suffix in (("ADDR", p.address, "ULL"), ("DATA", p.data, "U")):
            for f in fields:
                name = f"PVMSI_MSGFMT_{p.message_format.name}_{part}_{f.name.upper()}"
                out.append(f"#define {name}_SHIFT {f.lo}")
                out.append(f"#define {name}_MASK {f.mask:#x}{suffix}")
                if f.value is not None:
                    out.append(f"#define {name}_VALUE {f.value:#x}U")
    out += ["", *comment("Vectors an entry may name per architecture (HV-ALLOC-006); MAX_ALWAYS: every hypervisor.")]
    for a in ARCH_TARGETS.values():
        arch = a.arch.upper()
        out += [
            f"#define PVMSI_VECTOR_MIN_{arch} {a.vector_min}U",
            f"#define PVMSI_VECTOR_MAX_ALWAYS_{arch} {a.vector_max_guaranteed}U",
            f"#define PVMSI_VECTOR_MAX_{arch} {a.vector_max}U",
        ]
    return out
