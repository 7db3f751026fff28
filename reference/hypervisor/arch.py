"""Register-level entry: recognise a pvmsi call in a vCPU's registers and write the result back
(spec "Calling conventions"; the conventions themselves are data in :mod:`pvmsi.spec.callconv`)."""

from __future__ import annotations

from collections.abc import Mapping

from ...spec.callconv import CONVENTIONS, CallingConvention
from .core import CallResult, HypervisorCore
from .ports import VmPort

MASK64 = (1 << 64) - 1
FN_MASK = 0xFF

BY_ARCH: dict[str, CallingConvention] = {cc.arch: cc for cc in CONVENTIONS}


def function_number(cc: CallingConvention, regs: Mapping[str, int]) -> int | None:
    """The pvmsi function number in ``regs``, or None when the trap is not a pvmsi call at all."""
    fid = regs.get(cc.function_id_register, 0)
    if cc.arch == "riscv64":
        if regs.get(cc.extra_id_register or "", 0) != 0x0850564D:
            return None
        return fid  # any FID of the pvmsi extension is ours; an unknown one gets NOT_SUPPORTED
    if cc.arch == "arm64":
        fid &= 0xFFFFFFFF  # w0
    if fid & ~FN_MASK != cc.call_base:
        return None
    return fid & FN_MASK


def to_signed(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def hypercall_registers(
    core: HypervisorCore, vm: VmPort, vcpu: int, arch: str, regs: Mapping[str, int]
) -> dict[str, int] | None:
    """Run the pvmsi call in ``regs``; the register file after the call, or None if not a pvmsi call."""
    cc = BY_ARCH[arch]
    fn = function_number(cc, regs)
    if fn is None:
        return None
    args = [regs.get(r, 0) & MASK64 for r in cc.argument_registers]
    result: CallResult = core.hypercall(vm, vcpu, fn, args)
    out = dict(regs)
    out[cc.status_register] = result.status & MASK64
    out[cc.value_register] = result.value & MASK64
    if arch == "arm64":
        out["x2"] = 0  # spec: x2 and x3 are returned as zero
        out["x3"] = 0
    return out
