"""``pvmsi gen c-header``: the C header of the interface, from spec/ alone (docs: "Using the C header").

Layout: version macros and the interface-version guard, every constant group, the calling-convention ids,
then per call its function ids right above its parameter structs (a batch call's blocks also as one struct each,
the entries a flexible array member), then the per-architecture helpers, in the stdint style only: a uapi header
holds no code, so its helpers are a header of their own (``pvmsi gen c-helpers``, :func:`c_helpers`).
"""

from __future__ import annotations

from ..spec import harness_devices as hd
from ..spec.callconv import (
    ARM64_SMCCC_HINTS,
    ARM64_VENDOR_HYP_CALL_UID,
    CONVENTIONS,
    PVMSI_UID,
    RISCV_EXTENSION_ID,
    SBI_ERROR_OF_STATUS,
    X86_CPL_REFUSED,
    X86_CPUID_FIRST_BASE,
    X86_CPUID_LAST_BASE,
    X86_CPUID_SIGNATURE,
    X86_CPUID_STEP,
    X86Path,
    uid_registers,
)
from ..spec.calls import CALLS, CallDef
from ..spec.constants import group
from ..spec.formats.harness import PAYLOADS
from ..spec.harness_constants import HARNESS_VALUES, REQUESTS_SERVED_BY, RESPONSE_OF, FrameKind, HarnessRole
from ..spec.layout import FieldLayout, FormatLayout, all_layouts, layout_of
from ..spec.version import VERSION_MAJOR, VERSION_MINOR
from .c_asm import ARCH_PREFIX, helpers
from .c_common import (
    HELPERS_GUARD,
    INCLUDES,
    Style,
    banner,
    comment,
    groups,
    include_guard,
    include_line,
    literal,
    scalar_type,
    squeeze,
    version_literal,
)
from .c_formats import message_formats

#: The file the helpers header includes by default: the interface header where each style installs it.
INTERFACE_HEADER: dict[Style, str] = {"stdint": "pvmsi.h", "uapi": "<linux/pvmsi.h>"}


def _version() -> list[str]:
    v = f"{VERSION_MAJOR}.{VERSION_MINOR}"
    return [
        '/* Version of the interface this header describes (spec "Versioning and extension"). */',
        f"#define PVMSI_VERSION_MAJOR {VERSION_MAJOR}",
        f"#define PVMSI_VERSION_MINOR {VERSION_MINOR}",
        f"#define PVMSI_VERSION {version_literal()} /* major << 16 | minor, as the VERSION call returns it */",
        "",
        *comment(
            "Interface-version guard (as Xen's __XEN_INTERFACE_VERSION__): define PVMSI_INTERFACE_VERSION to the "
            "version your code was written against; it defaults to this header's. A newer one than the header "
            "is an error, and so is another major version (layouts differ between majors)."
        ),
        "#ifndef PVMSI_INTERFACE_VERSION",
        "#define PVMSI_INTERFACE_VERSION PVMSI_VERSION",
        "#endif",
        "#if PVMSI_INTERFACE_VERSION > PVMSI_VERSION",
        f'#error "PVMSI_INTERFACE_VERSION is newer than this header (pvmsi {v}): regenerate the header"',
        "#endif",
        "#if (PVMSI_INTERFACE_VERSION >> 16) != PVMSI_VERSION_MAJOR",
        f'#error "PVMSI_INTERFACE_VERSION names another major version than this header (pvmsi {v})"',
        "#endif",
        "",
        *comment(
            "PVMSI_U64_C(c): a 64-bit unsigned constant (ULL); strict C90 has no long long, so there it is UL "
            "(64 bits on the LP64 targets pvmsi defines calling conventions for)."
        ),
        "#if defined(__cplusplus) || (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L)",
        "#define PVMSI_U64_C(c) c##ULL",
        "#else",
        "#define PVMSI_U64_C(c) c##UL",
        "#endif",
        "",
        *comment(
            "PVMSI_HAVE_FLEX_ARRAY: 1 where the batch blocks' structs (struct pvmsi_msg_alloc_in, ...) end in a "
            "flexible array member of their entries: C99 and later. C90 and C++ have none, so there the struct "
            "holds the batch header alone and the entries follow it: (struct pvmsi_alloc_entry *)(block + 1). "
            "Define it yourself to choose."
        ),
        "#ifndef PVMSI_HAVE_FLEX_ARRAY",
        "#if !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L",
        "#define PVMSI_HAVE_FLEX_ARRAY 1",
        "#else",
        "#define PVMSI_HAVE_FLEX_ARRAY 0",
        "#endif",
        "#endif",
    ]


def _constants() -> list[str]:
    out: list[str] = []
    for g in groups(skip=("function",)):
        out += ["", *comment(f"{g.doc} ({g.c_prefix}*, spec constants.{g.source.__name__})")]
        for name, value, doc in g.members:
            out += [*comment(doc), f"#define {g.c_name(name)} {literal(g, value)}"]
    fn = group("function")
    unused = [(n, v) for n, v, _ in fn.members if not any(c.fn.name == n for c in CALLS)]
    for name, value in unused:
        out.append(f"#define {fn.c_name(name)} {literal(fn, value)}")
    return out


def _harness_values() -> list[str]:
    title = 'Fixed numbers of the conformance harness protocol (spec appendix "Conformance harness protocol").'
    out = ["", *comment(title)]
    for v in HARNESS_VALUES:
        value = f"{v.value:#010x}" if v.value >> 24 else str(v.value)  # the magic reads best in hex
        out += [*comment(v.doc), f"#define PVMSI_{v.name} {value}U"]
    return out


def harness_requests() -> list[str]:
    """Every harness request as an X-macro row (spec harness ``RESPONSE_OF``, ``PAYLOADS``, ``REQUESTS_SERVED_BY``),
    so that C code builds its request table from the spec instead of restating sizes."""
    out = [
        "",
        *comment(
            "Every harness request, for a table built with an X-macro: X(request, response, fixed payload bytes, "
            "tail, hv, guest): request and response name PVMSI_HFRAME_*; tail is 0 when nothing follows the fixed "
            "payload, 1 when entries follow, 2 when bytes follow (padded to 8); hv and guest are 1 when an IUT of "
            "that role serves the request (HELLO and BYE: both; GUEST_HYPERCALL, GUEST_DEVICE_OP and GUEST_TRAP go "
            "from a guest IUT to the suite: neither)."
        ),
        "#define PVMSI_HARNESS_REQUESTS(X) \\",
    ]
    rows = []
    for kind, response in RESPONSE_OF.items():
        payload = PAYLOADS[kind]
        fixed = layout_of(payload.fmt).size if payload.fmt is not None else 0
        tail = 0 if payload.tail is None else (1 if payload.tail[0] == "entries" else 2)
        common = kind in (FrameKind.HELLO, FrameKind.BYE)
        hv = int(common or kind in REQUESTS_SERVED_BY[HarnessRole.HYPERVISOR])
        guest = int(common or kind in REQUESTS_SERVED_BY[HarnessRole.GUEST])
        rows.append(f"\tX({kind.name}, {response.name}, {fixed}, {tail}, {hv}, {guest})")
    out += [r + " \\" for r in rows[:-1]] + [rows[-1]]
    return out


def harness_devices() -> list[str]:
    """The harness device model's numbers (spec harness_devices), ``PVMSI_HDEV_*``."""

    def lit(value: int) -> str:
        return f"PVMSI_U64_C({value:#x})" if value >> 32 else (f"{value:#x}U" if value >= 16 else f"{value}U")

    out = ["", *comment('The harness device model (spec appendix "Conformance harness protocol", "Device model").')]
    for name, doc in hd.C_CONSTANTS:
        out += [*comment(doc), f"#define PVMSI_HDEV_{name} {lit(getattr(hd, name))}"]
    for d in hd.DEVICES.values():
        out.append(f"/* PVMSI_HPROFILE_{d.profile.name}: {d.name}. */")
        for field in ("vendor_id", "device_id", "msi_vectors", "msix_table_size", "ims_slots", "subdevices"):
            out.append(f"#define PVMSI_HDEV_{d.profile.name}_{field.upper()} {lit(getattr(d, field))}")
        out.append(f"#define PVMSI_HDEV_{d.profile.name}_SUBDEVICE_SLOTS {lit(d.subdevice_slots)}")
    return out


def call_table() -> list[str]:
    """Every call as an X-macro row (spec ``CALLS``): its registers and the states it is valid in."""
    rows = [
        f"\tX({c.name}, {int(c.fn):#04x}, {int(c.input is not None)}, {int(c.output is not None)}, "
        f"{int(c.needs_negotiation)})"
        for c in CALLS
    ]
    return [
        "",
        *comment(
            "Every call, for a table built with an X-macro: X(name, function number, in, out, negotiated): in and "
            "out are 1 when arg0 (arg1) holds the GPA of an input (output) block, else that register is reserved "
            "and zero; negotiated is 1 when the call is valid only once the VM is NEGOTIATED (else WRONG_STATE)."
        ),
        "#define PVMSI_CALLS(X) \\",
        *[r + " \\" for r in rows[:-1]],
        rows[-1],
    ]


def _callconv() -> list[str]:
    out = ["", '/* Function ids per architecture (spec "Calling conventions"). */']
    for cc in CONVENTIONS:
        p = ARCH_PREFIX[cc.arch]
        out += comment(f"{cc.arch}: {cc.function_id_encoding}.")
        if cc.arch == "riscv64":
            out += [f"#define PVMSI_RISCV_EXT_ID {RISCV_EXTENSION_ID:#010x}U", f"#define PVMSI_{p}_FN(fn) (fn)"]
        else:
            out += [f"#define PVMSI_{p}_CALL_BASE {cc.call_base:#010x}U"]
            out += [f"#define PVMSI_{p}_FN(fn) (PVMSI_{p}_CALL_BASE | (fn))"]
    sig = X86_CPUID_SIGNATURE
    regs = ("EBX", "ECX", "EDX")
    out += [
        "",
        *comment(f"x86-64 discovery: CPUID leaf bases and the signature {sig.decode()!r} in EBX, ECX, EDX."),
        f"#define PVMSI_X86_CPUID_FIRST_BASE {X86_CPUID_FIRST_BASE:#010x}U",
        f"#define PVMSI_X86_CPUID_LAST_BASE {X86_CPUID_LAST_BASE:#010x}U",
        f"#define PVMSI_X86_CPUID_STEP {X86_CPUID_STEP:#x}U",
    ]
    for i, reg in enumerate(regs):
        word = int.from_bytes(sig[4 * i : 4 * i + 4], "little")
        out.append(f"#define PVMSI_X86_CPUID_SIGNATURE_{reg} {word:#010x}U /* {sig[4 * i : 4 * i + 4].decode()!r} */")
    out += comment("x86-64: CPUID(base + 1).EBX, the hypercall path; rax after a call from CPL > 0 (not run).")
    out += [
        f"#define PVMSI_X86_PATH_{name} {value}U"
        for name, value in (("NONE", X86Path.NONE), ("NATIVE", X86Path.NATIVE))
    ]
    out.append(f"#define PVMSI_X86_CPL_REFUSED ({X86_CPL_REFUSED}L)")
    out += comment(f"arm64: the vendor hypervisor Call UID function and the pvmsi UID {PVMSI_UID} in w0..w3.")
    out.append(f"#define PVMSI_ARM64_VENDOR_HYP_CALL_UID {ARM64_VENDOR_HYP_CALL_UID:#010x}U")
    out += [f"#define PVMSI_ARM64_UID_W{i} {w:#010x}U" for i, w in enumerate(uid_registers(PVMSI_UID))]
    out.append(f"#define PVMSI_ARM64_SMCCC_HINTS {ARM64_SMCCC_HINTS:#010x}U")
    out += comment("riscv64: sbiret.error for each failing pvmsi status (sbiret.value holds the status).")
    out += [f"#define PVMSI_RISCV_SBI_ERROR_{st.name} ({err})" for st, err in SBI_ERROR_OF_STATUS.items()]
    return out


def _member(f: FieldLayout, style: Style) -> list[str]:
    if f.reserved:
        doc = "reserved, must be zero"
    else:
        doc = f.doc
        key = f.enum or f.flags
        if key and group(key).c_prefix + "*" not in doc:
            doc += f" Values: {group(key).c_prefix}*."
        if f.signed and style == "uapi":
            doc += f" Signed: read as (__s{f.elem_size * 8})le{f.elem_size * 8}_to_cpu()."
    typ = f"struct {f.nested.c_name}" if f.nested else scalar_type(f, style)
    dim = f"[{f.count}]" if f.count > 1 else ""
    return [*comment(f"+{f.offset}: {doc}", "\t"), f"\t{typ} {f.c_name}{dim};"]


def struct(lay: FormatLayout, style: Style) -> list[str]:
    lines = comment(f"{lay.doc} ({lay.size} bytes, spec format {lay.name})")
    lines.append(f"struct {lay.c_name} {{")
    for f in lay.fields:
        lines += _member(f, style)
    return [*lines, "};", ""]


def _call(c: CallDef, by_name: dict[str, FormatLayout], done: set[str], style: Style) -> list[str]:
    args = "; ".join(f"arg{i}: {a}" for i, a in enumerate(c.args))
    state = "needs NEGOTIATED" if c.needs_negotiation else "valid before negotiation"
    out = ["", *comment(f"{c.name}: {c.doc} Registers: {args}. Value: {c.value}. State: {state}.")]
    out.append(f"#define {c.c_name} {literal(group('function'), int(c.fn))}")
    for cc in CONVENTIONS:
        out.append(f"#define PVMSI_{ARCH_PREFIX[cc.arch]}_FN_{c.name} {cc.function_id(c.fn):#010x}U")
    for role, head, entry in (("IN (arg0)", c.input, c.input_entry), ("OUT (arg1)", c.output, c.output_entry)):
        if head is None:
            continue
        text = f"struct pvmsi_{head}" + (f", then count x struct pvmsi_{entry}" if entry else "")
        out.append(f"/* {role} of {c.name}: {text} */")
    if c.max_batch is not None:
        out.append(
            f"/* The most entries one {c.name} batch carries: what one page holds of its entries and results. */"
        )
        out.append(f"#define {c.c_max_batch} {c.max_batch}U")
    out.append("")
    for name in (c.input, c.input_entry, c.output, c.output_entry):
        if name is not None:
            out += _with_deps(by_name[name], done, style)
    return out + batch_blocks(c)


def batch_block_structs(c: CallDef) -> list[tuple[str, str, str, str]]:
    """A batch call's blocks as single structs: (struct name, header format, entry format, member name)."""
    out = []
    for suffix, head, entry, member in (
        ("in", c.input, c.input_entry, "entries"),
        ("out", c.output, c.output_entry, "results"),
    ):
        if head is not None and entry is not None:
            out.append((f"pvmsi_{c.name.lower()}_{suffix}", head, entry, member))
    return out


def batch_blocks(c: CallDef) -> list[str]:
    """The structs of :func:`batch_block_structs`: the header, then ``count`` entries as a flexible array member
    (spec "Batching": the entries follow the header directly)."""
    out: list[str] = []
    for name, head, entry, member in batch_block_structs(c):
        what = "IN (arg0)" if name.endswith("_in") else "OUT (arg1)"
        out += [
            *comment(f"The whole {what} block of {c.name}: struct pvmsi_{head}, then its entries."),
            f"struct {name} {{",
            f"\tstruct pvmsi_{head} batch;",
            "#if PVMSI_HAVE_FLEX_ARRAY",
            f"\tstruct pvmsi_{entry} {member}[];",
            "#endif",
            "};",
            "",
        ]
    return out


def _with_deps(lay: FormatLayout, done: set[str], style: Style) -> list[str]:
    """``lay``'s struct after the structs it nests, each emitted once."""
    if lay.name in done:
        return []
    out: list[str] = []
    for f in lay.fields:
        if f.nested is not None:
            out += _with_deps(f.nested, done, style)
    done.add(lay.name)
    return out + struct(lay, style)


def c_header(style: Style = "stdint") -> str:
    """The whole header, as text."""
    guard = include_guard(style)
    layouts = all_layouts()
    by_name = {lay.name: lay for lay in layouts}
    done: set[str] = set()
    lines = banner(
        style,
        f"pvmsi.h: pvmsi {VERSION_MAJOR}.{VERSION_MINOR} interface, {style} style "
        "(MSI, MSI-X and IMS messages by hypercall).",
        f"pvmsi gen c-header --style {style}",
    )
    lines += [
        "",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        f"#include {INCLUDES[style]}",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        *_version(),
        *_constants(),
        *_harness_values(),
        *message_formats(),
        *_callconv(),
        "",
        *comment("Calls: function numbers, ids and parameter blocks (little-endian, 8-byte aligned GPAs)."),
    ]
    for c in CALLS:
        lines += _call(c, by_name, done, style)
    for area in dict.fromkeys(lay.area for lay in layouts if lay.name not in done):
        lines += ["", f"/* Formats of the spec area {area!r}, used by no call directly. */", ""]
        for lay in layouts:
            if lay.area == area:
                lines += _with_deps(lay, done, style)
    lines += harness_devices()
    lines += call_table()
    lines += harness_requests()
    if style == "stdint":
        lines += ["", f"#ifndef {HELPERS_GUARD} /* pvmsi_hypercall.h holds these too */", f"#define {HELPERS_GUARD}"]
        lines += [*_helpers(style), f"#endif /* {HELPERS_GUARD} */"]
    else:
        lines += [
            "",
            *comment(
                "A uapi header holds no code: the hypercall helpers are in their own header, "
                "`pvmsi gen c-helpers --style uapi` (it includes this one)."
            ),
        ]
    lines += ["", "#ifdef __cplusplus", "}", "#endif", "", f"#endif /* {guard} */"]
    return squeeze(lines)


def _helpers(style: Style) -> list[str]:
    lines = ["", *comment("Hypercall helpers: status in the return value, the value register in *value."), ""]
    for cc in CONVENTIONS:
        lines += [*helpers(cc, style), ""]
    return lines


def c_helpers(style: Style = "uapi", header: str | None = None) -> str:
    """The helpers header: the per-architecture hypercall helpers (inline assembly) over the interface header
    ``header`` it includes (default: where the style installs it, :data:`INTERFACE_HEADER`). The stdint header
    carries the same helpers under the same guard, so including both is harmless."""
    lines = banner(
        style,
        f"pvmsi_hypercall.h: pvmsi {VERSION_MAJOR}.{VERSION_MINOR} hypercall helpers, {style} style "
        '(spec "Calling conventions").',
        f"pvmsi gen c-helpers --style {style}",
    )
    lines += [
        "",
        f"#ifndef {HELPERS_GUARD}",
        f"#define {HELPERS_GUARD}",
        "",
        include_line(header or INTERFACE_HEADER[style]),
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        *_helpers(style),
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        f"#endif /* {HELPERS_GUARD} */",
    ]
    return squeeze(lines)
