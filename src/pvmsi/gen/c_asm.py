"""Per-architecture hypercall helpers (inline assembly), generated from :mod:`pvmsi.spec.callconv`.

Each helper traps with the convention's instruction, passes the function id and the four arguments in the
convention's registers and returns the status register, storing the value register through ``value``.
Registers the convention does not preserve are outputs or clobbers; "memory" is clobbered because the
hypervisor reads and writes the parameter blocks.
"""

from __future__ import annotations

import re

from ..spec.callconv import RISCV_EXTENSION_ID, CallingConvention
from .c_common import Style, comment, slong, ulong

#: Preprocessor test for each architecture, and its prefix in macro names.
ARCH_GUARD = {
    "x86_64": "defined(__x86_64__)",
    "arm64": "defined(__aarch64__)",
    "riscv64": "defined(__riscv) && __riscv_xlen == 64",
}
ARCH_PREFIX = {"x86_64": "X86", "arm64": "ARM64", "riscv64": "RISCV"}

#: General-purpose registers each architecture's helpers may touch, and x86's constraint letters.
_GPRS = {
    "x86_64": ("rax", "rbx", "rcx", "rdx", "rsi", "rdi"),
    "arm64": tuple(f"x{i}" for i in range(31)),
    "riscv64": tuple(f"a{i}" for i in range(8)),
}
_X86_LETTER = {"rax": "a", "rbx": "b", "rcx": "c", "rdx": "d", "rsi": "S", "rdi": "D"}
#: The one extra id register value of a convention (riscv64: the SBI extension id in a7).
_EXTRA_ID_MACRO = {"riscv64": ("PVMSI_RISCV_EXT_ID", RISCV_EXTENSION_ID)}


def _reg64(reg: str) -> str:
    """The 64-bit register holding ``reg`` (arm64 ``w0`` lives in ``x0``)."""
    return "x" + reg[1:] if re.fullmatch(r"w\d+", reg) else reg


def clobbered(cc: CallingConvention) -> set[str]:
    """Registers the hypervisor may change, read off the convention's ``preserved`` text."""
    gprs = _GPRS[cc.arch]
    text = cc.preserved
    m = re.fullmatch(r"every register but (\w+) and (\w+)( \(.*\))?", text)
    if m:
        return {m.group(1), m.group(2)}
    m = re.match(r"x(\d+)-x(\d+) and sp", text)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        return {r for r in gprs if not lo <= int(r[1:]) <= hi}
    raise ValueError(f"{cc.arch}: cannot read the preserved registers from {text!r}; update pvmsi/gen/c_asm.py")


def helper_name(instruction: str) -> str:
    return "pvmsi_hypercall_" + instruction.split()[0]


def _operands(cc: CallingConvention) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]:
    """(outputs, inputs, clobbers) as (register, C expression) pairs in the convention's registers."""
    ins = [(_reg64(cc.function_id_register), "fn")]
    if cc.extra_id_register:
        ins.append((cc.extra_id_register, _EXTRA_ID_MACRO[cc.arch][0]))
    ins += [(r, f"a{i}") for i, r in enumerate(cc.argument_registers)]
    outs = [(cc.status_register, "status"), (cc.value_register, "val")]
    written = clobbered(cc)
    if not {cc.status_register, cc.value_register} <= written:
        raise ValueError(f"{cc.arch}: status/value registers must not be preserved")
    used = {r for r, _ in ins} | {r for r, _ in outs}
    return outs, ins, sorted(written - used)


def _x86_helper(cc: CallingConvention, insn: str, style: Style) -> list[str]:
    outs, ins, clob = _operands(cc)
    out_regs = [r for r, _ in outs]
    o = [f'"={_X86_LETTER[r]}"({e})' for r, e in outs]
    # An input in an output register is tied to that output (matching constraint); the others are preserved.
    i = [f'"{out_regs.index(r)}"({e})' if r in out_regs else f'"{_X86_LETTER[r]}"({e})' for r, e in ins]
    c = [f'"{r}"' for r in clob] + ['"memory"']
    return _body(cc, insn, style, [], o, i, c)


def _reg_helper(cc: CallingConvention, insn: str, style: Style) -> list[str]:
    outs, ins, clob = _operands(cc)
    u = ulong(style)
    decl: list[str] = []
    regs = dict.fromkeys([r for r, _ in ins] + [r for r, _ in outs])
    init = dict(ins)
    for r in regs:
        decl.append(f'\tregister {u} r_{r} __asm__("{r}") = {init.get(r, "0")};')
    out_regs = {r for r, _ in outs}
    # Inputs the hypervisor may change are read-write operands; status and value are read back from them.
    o = [f'"+r"(r_{r})' for r in regs if r in out_regs or (r in init and r in clobbered(cc))]
    rw = {r for r in regs if r in out_regs or r in clobbered(cc)}
    i = [f'"r"(r_{r})' for r in regs if r not in rw]
    c = [f'"{r}"' for r in clob if r not in regs] + ['"memory"']
    decl.append("")
    return _body(cc, insn, style, decl, o, i, c)


def _body(
    cc: CallingConvention, insn: str, style: Style, decl: list[str], o: list[str], i: list[str], c: list[str]
) -> list[str]:
    u, s = ulong(style), slong(style)
    args = ", ".join(f"{u} a{n}" for n in range(4))
    lines = [f"static __inline__ {s} {helper_name(insn)}({u} fn,", f"\t{args}, {u} *value)", "{"]
    if cc.arch == "x86_64":
        lines += [f"\t{s} status;", f"\t{u} val;", ""]
    lines += decl
    lines += [f'\t__asm__ __volatile__("{insn}"', f"\t\t: {', '.join(o)}", f"\t\t: {', '.join(i)}"]
    lines += [f"\t\t: {', '.join(c)});"]
    if cc.arch == "x86_64":
        lines += ["\t*value = val;", "\treturn status;", "}"]
    else:
        st, va = cc.status_register, cc.value_register
        lines += [f"\t*value = r_{va};", f"\treturn ({s})r_{st};", "}"]
    return lines


def helpers(cc: CallingConvention, style: Style) -> list[str]:
    """The ``#if``-guarded helpers of one architecture, one per trap instruction."""
    regs = ", ".join(cc.argument_registers)
    lines = [f"#if {ARCH_GUARD[cc.arch]}"]
    for insn in cc.instruction:
        doc = (
            f"{cc.arch}: {insn}. fn is a PVMSI_{ARCH_PREFIX[cc.arch]}_FN_* id ({cc.function_id_encoding}); "
            f"a0..a3 go in {regs}; status in {cc.status_register}, value in {cc.value_register}; "
            f"preserved: {cc.preserved}."
        )
        lines += [*comment(doc), *(_x86_helper if cc.arch == "x86_64" else _reg_helper)(cc, insn, style), ""]
    lines[-1] = f"#endif /* {ARCH_GUARD[cc.arch]} */"
    return lines
