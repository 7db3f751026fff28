"""Register-level helpers of the hypervisor suite: traps with a register file, per architecture, and the
discovery calls around pvmsi (spec "Calling conventions", "Discovery")."""

from __future__ import annotations

import pytest

from ..spec.callconv import ARM64, RISCV64, RISCV_EXTENSION_ID, X86_64, CallingConvention
from ..spec.harness_constants import TRAP_REGISTERS, TrapArch, TrapInstruction
from ..spec.platforms import PLATFORMS
from .plugin import UNSUPPORTED_PREFIX
from .toolkit import Session, architectures, check

MASK64 = (1 << 64) - 1
CONVENTION: dict[TrapArch, CallingConvention] = {
    TrapArch.X86_64: X86_64,
    TrapArch.ARM64: ARM64,
    TrapArch.RISCV64: RISCV64,
}
CALL_INSTRUCTIONS: dict[TrapArch, tuple[TrapInstruction, ...]] = {
    TrapArch.X86_64: (TrapInstruction.VMCALL, TrapInstruction.VMMCALL),
    TrapArch.ARM64: (TrapInstruction.HVC,),
    TrapArch.RISCV64: (TrapInstruction.ECALL,),
}


def signed(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def on_arch(arch: TrapArch) -> pytest.MarkDecorator:
    """The test applies to the platforms of ``arch`` only (spec "Message formats": a platform implies its
    architecture), so the catalogue and the reports know it before it runs."""
    return pytest.mark.platforms(*(p.key for p in PLATFORMS if p.arch == arch.name.lower()))


def needs(session: Session, arch: TrapArch) -> None:
    """The calling test is unsupported unless ``arch`` is the architecture of the ICS's platform
    (:func:`~.toolkit.architectures`)."""
    if arch not in architectures(session.platform):
        pytest.skip(f"{UNSUPPORTED_PREFIX}{arch.name} is not the architecture of platform {session.platform}")


def trap(
    session: Session,
    arch: TrapArch,
    instruction: TrapInstruction,
    regs: dict[str, int],
    rid: str,
    *,
    privilege: int = 0,
) -> dict[str, int]:
    """Execute ``instruction`` with ``regs`` (by name, the rest zero); the register file after it, by name."""
    names = TRAP_REGISTERS[arch]
    before = [regs.get(n, 0) & MASK64 for n in names]
    handled, after = session.iut.trap(session.vm, 0, arch, instruction, before, privilege)
    session.log(
        f"TRAP {arch.name} {instruction.name} cpl={privilege} "
        f"{ {n: hex(v) for n, v in zip(names, before, strict=True) if v} } -> handled={handled} "
        f"{ {n: hex(v) for n, v in zip(names, after, strict=True) if v} }"
    )
    check(handled, rid, f"{instruction.name} handled", "not handled")
    return dict(zip(names, after, strict=True))


def call_registers(arch: TrapArch, fn: int, args: tuple[int, int, int, int] = (0, 0, 0, 0)) -> dict[str, int]:
    """The registers of pvmsi call ``fn`` with ``args`` in ``arch``'s convention."""
    cc = CONVENTION[arch]
    regs = {cc.function_id_register.replace("w", "x"): cc.function_id(fn)}
    if cc.extra_id_register:
        regs[cc.extra_id_register] = RISCV_EXTENSION_ID
    regs.update(zip(cc.argument_registers, args, strict=True))
    return regs
