"""Deliberately faulty hypervisors: each breaks exactly one requirement of the reference, and the suite must
catch each one with that requirement id (the suite proves its own strength).

``pvmsi conformance run --iut faulty:NAME`` runs the suite against one of them; ``pvmsi conformance faults``
lists them.  Each fault patches one method of a fresh reference hypervisor instance, so the rest of it stays
correct and the verdict points at the one broken rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..reference.backend import ReferenceHypervisor
from ..reference.hypervisor.blocks import ALIGN, PAGE, MemoryRules
from ..reference.hypervisor.call import Call, CallResult
from ..reference.hypervisor.errors import CallError
from ..reference.hypervisor.ports import GuestMemory, VmPort
from ..reference.hypervisor.vmstate import Claim, DeviceKey, Message
from ..reference.platform.iommu import Delivery, Fault
from ..reference.platform.msi_format import MessageFormatError, parse
from ..reference.platform.requester import Requester
from ..spec.constants import DeliveryFlag, Feature, FunctionNumber, Status
from ..spec.fastcodec import Values
from ..spec.states import VmEvent, VmState


@dataclass(frozen=True)
class FaultyImpl:
    """One faulty hypervisor: its name, the requirement it breaks, what it does wrong, how to make it."""

    name: str
    breaks: str
    description: str
    apply: Callable[[ReferenceHypervisor], None]


FAULTS: dict[str, FaultyImpl] = {}


def fault(name: str, breaks: str, description: str) -> Callable[[Callable[[ReferenceHypervisor], None]], None]:
    def register(fn: Callable[[ReferenceHypervisor], None]) -> None:
        FAULTS[name] = FaultyImpl(name, breaks, description, fn)

    return register


def faulty_hypervisor(name: str) -> ReferenceHypervisor:
    impl = FAULTS.get(name)
    if impl is None:
        raise KeyError(f"no faulty implementation {name!r}; known: {', '.join(sorted(FAULTS))}")
    hv = ReferenceHypervisor()
    hv.name = f"faulty:{name}"
    impl.apply(hv)
    return hv


def _wrap_handler(
    hv: ReferenceHypervisor, fn: FunctionNumber, wrap: Callable[[Callable[[Call], CallResult], Call], CallResult]
) -> None:
    core = hv.system.core
    call, inner = core._dispatch[int(fn)]
    core._dispatch[int(fn)] = (call, lambda c: wrap(inner, c))


# -- calling conventions and status codes --------------------------------------------------------------------------


def _register_failure(r: CallResult) -> bool:
    """Whether the reference failed a call on its argument registers (HV-CALL-003)."""
    return r.status == Status.INVALID_PARAMETER and ("HV-CALL-003" in r.why or "argument registers" in r.why)


@fault("not-supported-for-bad-registers", "HV-CALL-002", "answers a reserved register with NOT_SUPPORTED")
def _not_supported(hv: ReferenceHypervisor) -> None:
    core = hv.system.core
    inner = core.hypercall

    def hypercall(vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        r = inner(vm, vcpu, fn, args)
        return CallResult(Status.NOT_SUPPORTED, 0, r.why) if _register_failure(r) else r

    core.hypercall = hypercall  # type: ignore[method-assign]


@fault("ignore-reserved-registers", "HV-CALL-003", "ignores non-zero reserved argument registers")
def _ignore_registers(hv: ReferenceHypervisor) -> None:
    core = hv.system.core
    inner = core.hypercall

    def hypercall(vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        return inner(vm, vcpu, fn, (args[0], args[1], 0, 0) if len(args) == 4 else args)

    core.hypercall = hypercall  # type: ignore[method-assign]


@fault("value-on-failure", "HV-CALL-004", "returns a non-zero value register from failing calls")
def _value_on_failure(hv: ReferenceHypervisor) -> None:
    core = hv.system.core
    inner = core.hypercall

    def hypercall(vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        r = inner(vm, vcpu, fn, args)
        return CallResult(r.status, 0xDEAD, r.why) if r.status < 0 and fn < 0x20 else r

    core.hypercall = hypercall  # type: ignore[method-assign]


# -- negotiation ---------------------------------------------------------------------------------------------------


@fault("accept-unoffered-features", "HV-NEG-002", "NEGOTIATE accepts feature bits it never offered")
def _unoffered(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        r = inner(c)
        if r.status == Status.INVALID_PARAMETER and c.st.state.value == "OPEN":
            c.st.features = int.from_bytes(c.vm.memory.read(c.in_gpa + 8, 8), "little")
            c.st.move(VmEvent.NEGOTIATE_ACCEPTED)
            return CallResult(Status.SUCCESS, c.st.features)
        return r

    _wrap_handler(hv, FunctionNumber.NEGOTIATE, wrap)


@fault("ignore-required-features", "HV-NEG-004", "NEGOTIATE accepts a subset without a required feature")
def _required(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        c.st.config = replace(c.st.config, features_required=0)
        return inner(c)

    _wrap_handler(hv, FunctionNumber.NEGOTIATE, wrap)


@fault("renegotiate", "HV-NEG-006", "a second NEGOTIATE replaces the features in force")
def _renegotiate(hv: ReferenceHypervisor) -> None:
    core = hv.system.core
    inner = core._check_state

    def check(call: Any, st: Any) -> None:
        if call.fn is FunctionNumber.NEGOTIATE and st.state.value == "NEGOTIATED":
            st.move(VmEvent.RESET_CALL)
            st.features = 0
        inner(call, st)

    core._check_state = check  # type: ignore[method-assign]


@fault("no-state-check", "HV-STATE-002", "device and message calls work before NEGOTIATE")
def _no_state(hv: ReferenceHypervisor) -> None:
    core = hv.system.core
    inner = core._check_state

    def check(call: Any, st: Any) -> None:
        if call.needs_negotiation:
            st.features = st.features or st.config.features_offered
            return
        inner(call, st)

    core._check_state = check  # type: ignore[method-assign]


# -- memory rules --------------------------------------------------------------------------------------------------


class _Rules(MemoryRules):
    def __init__(self, skip: str) -> None:
        self.skip = skip

    def block(self, memory: GuestMemory, gpa: int, size: int, what: str) -> None:
        if self.skip == "align":
            gpa -= gpa % ALIGN
        if self.skip == "page":
            size = min(size, PAGE - gpa % PAGE)
        super().block(memory, gpa, size, what)

    def disjoint(self, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        if self.skip != "overlap":
            super().disjoint(in_gpa, in_size, out_gpa, out_size)


@fault("no-alignment-check", "HV-MEM-001", "accepts parameter blocks at unaligned addresses")
def _align(hv: ReferenceHypervisor) -> None:
    hv.system.core.rules = _Rules("align")


@fault("page-crossing", "HV-MEM-002", "accepts parameter blocks that cross a 4 KiB page")
def _page(hv: ReferenceHypervisor) -> None:
    hv.system.core.rules = _Rules("page")


@fault("overlapping-blocks", "HV-MEM-004", "accepts overlapping input and output blocks")
def _overlap(hv: ReferenceHypervisor) -> None:
    hv.system.core.rules = _Rules("overlap")


@fault("double-fetch", "HV-MEM-005", "reads the input block a second time after checking it")
def _double_fetch(hv: ReferenceHypervisor) -> None:
    for fn in (FunctionNumber.NEGOTIATE, FunctionNumber.MSG_ALLOC):

        def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
            r = inner(c)
            c.vm.memory.read(c.in_gpa, 16)
            return r

        _wrap_handler(hv, fn, wrap)


@fault("reserved-fields-unchecked", "HV-CONV-001", "ignores non-zero reserved fields of input blocks")
def _reserved(hv: ReferenceHypervisor) -> None:
    core = hv.system.core
    inner = core.read_input

    def read_input(c: Call, fmt: Any, out_fmt: Any | None = None) -> Any:
        from ..spec.codec import decode, encode
        from ..spec.layout import layout_of

        lay = layout_of(fmt)
        raw = bytearray(c.vm.memory.read(c.in_gpa, lay.size))
        for leaf in lay.leaves():
            if leaf.field.reserved:
                raw[leaf.offset : leaf.offset + leaf.size] = bytes(leaf.size)
        patched = bytes(raw)
        c.vm.memory.write(c.in_gpa, patched)
        _ = decode(fmt, encode(fmt, decode(fmt, patched)))
        return inner(c, fmt, out_fmt)

    core.read_input = read_input  # type: ignore[method-assign]


# -- devices -------------------------------------------------------------------------------------------------------


@fault("claim-twice", "HV-DEV-007", "a second DEVICE_CLAIM of a claimed device succeeds")
def _claim_twice(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        try:
            return inner(c)
        except CallError as e:
            if e.status == Status.WRONG_STATE and c.st.claims and "already claimed" in e.why:
                return CallResult(Status.SUCCESS)
            raise

    _wrap_handler(hv, FunctionNumber.DEVICE_CLAIM, wrap)


@fault("keep-trapping", "HV-DEV-009", "keeps trapping and emulating MSI-X after DEVICE_CLAIM")
def _keep_trapping(hv: ReferenceHypervisor) -> None:
    system = hv.system
    original = system.create_vm

    def create_vm(*args: Any, **kw: Any) -> Any:
        vm = original(*args, **kw)
        vm.set_emulation = lambda device, kinds, trapped: None  # type: ignore[method-assign]
        return vm

    system.create_vm = create_vm  # type: ignore[method-assign]


@fault("release-keeps-messages", "HV-DEV-011", "DEVICE_RELEASE leaves the device's messages allocated")
def _release(hv: ReferenceHypervisor) -> None:
    core = hv.system.core

    def end_claim(vm: VmPort, st: Any, key: DeviceKey, event: Any) -> int:
        claim = st.claims.pop(key)
        vm.set_emulation(claim.device, claim.kinds, trapped=True)
        return int(claim.vectors)

    core.end_claim = end_claim  # type: ignore[method-assign]


# -- messages ------------------------------------------------------------------------------------------------------


def _patch_entry(hv: ReferenceHypervisor, attr: str, make: Callable[[Any], Any]) -> None:
    ops = hv.system.core.messages
    setattr(ops, attr, make(getattr(ops, attr)))


@fault("msi-count-unchecked", "HV-ALLOC-003", "accepts MSI blocks that are not a power of two")
def _msi_count(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def alloc(c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
            kind, flags, n, slot, vcpu, vector, r = e
            if kind == 1 and n > 1 and n & (n - 1):
                n = 1 << (n.bit_length() - 1)
            return inner(c, key, claim, (kind, flags, n, slot, vcpu, vector, r))  # type: ignore[no-any-return]

        return alloc

    _patch_entry(hv, "_alloc_entry", make)


@fault("slot-range-unchecked", "HV-ALLOC-004", "accepts MSI-X and IMS slots beyond the table")
def _slot_range(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def alloc(c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
            kind, flags, n, slot, vcpu, vector, r = e
            size = claim.device.msix_table_size if kind == 2 else claim.device.ims_slots if kind == 3 else 1
            return inner(c, key, claim, (kind, flags, n, slot % max(size, 1), vcpu, vector, r))  # type: ignore[no-any-return]

        return alloc

    _patch_entry(hv, "_alloc_entry", make)


@fault("vector-range-unchecked", "HV-ALLOC-006", "accepts vectors below 32 and vCPUs the VM lacks")
def _vector_range(hv: ReferenceHypervisor) -> None:
    ops = hv.system.core.messages
    inner = ops._target

    def target(c: Call, vcpu: int, vector: int, count: int, flags: int) -> None:
        inner(c, min(vcpu, c.vm.vcpu_count - 1), max(32, min(vector, 255 - count + 1)), count, flags)

    ops._target = target  # type: ignore[method-assign]


@fault("retarget-does-not-move", "HV-RETGT-002", "MSG_RETARGET answers SUCCESS but leaves the entry as it was")
def _retarget(hv: ReferenceHypervisor) -> None:
    remap = hv.system.core.remap
    remap.retarget = lambda base, count, *, vcpu, vector, posted: None  # type: ignore[method-assign]


@fault("free-any-handle", "HV-FREE-001", "MSG_FREE frees a handle held by another device or VM")
def _free_any(hv: ReferenceHypervisor) -> None:
    core = hv.system.core
    ops = core.messages

    def owned(c: Call, key: DeviceKey, handle: int) -> Message:
        for st in core.vm_states().values():
            if handle in st.messages:
                return st.messages[handle]
        raise CallError(Status.UNKNOWN_HANDLE, "no such handle")

    def free_entry(c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
        msg = owned(c, key, e[0])
        for st in core.vm_states().values():
            if e[0] in st.messages:
                owner_claim = st.claims[msg.device]
                ops.drop(st, owner_claim, e[0])
        return (0, 0)

    ops._owned = owned  # type: ignore[method-assign]
    ops._free_entry = free_entry  # type: ignore[method-assign]


@fault("free-keeps-remapping", "HV-FREE-002", "MSG_FREE forgets the handle but leaves the remapping entry live")
def _free_keeps(hv: ReferenceHypervisor) -> None:
    remap = hv.system.core.remap
    remap.release = lambda base: None  # type: ignore[method-assign]


@fault("no-quota", "HV-SEC-006", "does not enforce the per-device quota it reports")
def _no_quota(hv: ReferenceHypervisor) -> None:
    core = hv.system.core
    inner = core.configure_vm

    def configure(vm: VmPort, config: Any) -> None:
        inner(vm, replace(config, max_messages_per_device=1 << 30))

    core.configure_vm = configure  # type: ignore[method-assign]

    def wrap(inner_q: Callable[[Call], CallResult], c: Call) -> CallResult:
        r = inner_q(c)
        if r.status == Status.SUCCESS:
            raw = bytearray(c.vm.memory.read(c.out_gpa, 48))
            raw[40:44] = (4096).to_bytes(4, "little")  # still reports the usual quota
            c.vm.memory.write(c.out_gpa, bytes(raw))
        return r

    _wrap_handler(hv, FunctionNumber.DEVICE_QUERY, wrap)


# -- batches -------------------------------------------------------------------------------------------------------


@fault("resume-off-by-one", "HV-BATCH-004", "a resumed batch (start > 0) begins one entry early")
def _resume(hv: ReferenceHypervisor) -> None:
    for fn in (FunctionNumber.MSG_ALLOC, FunctionNumber.MSG_RETARGET, FunctionNumber.MSG_FREE):

        def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
            raw = bytearray(c.vm.memory.read(c.in_gpa, 32))
            start = int.from_bytes(raw[18:20], "little")
            if start > 0:
                raw[18:20] = (start - 1).to_bytes(2, "little")
                c.vm.memory.write(c.in_gpa, bytes(raw))
            return inner(c)

        _wrap_handler(hv, fn, wrap)


@fault("continue-after-error", "HV-BATCH-002", "a failing entry is skipped and the batch goes on")
def _continue(hv: ReferenceHypervisor) -> None:
    ops = hv.system.core.messages
    inner_alloc = ops._alloc_entry

    def alloc(c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
        try:
            return inner_alloc(c, key, claim, e)
        except CallError:
            return (0, 0, 0, int(Status.SUCCESS))

    ops._alloc_entry = alloc  # type: ignore[method-assign]


@fault("wrong-value-register", "HV-BATCH-007", "batch calls return the completed count, not next_index")
def _value(hv: ReferenceHypervisor) -> None:
    for fn in (FunctionNumber.MSG_ALLOC, FunctionNumber.MSG_RETARGET, FunctionNumber.MSG_FREE):

        def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
            r = inner(c)
            if r.status in (Status.SUCCESS, Status.INCOMPLETE) and r.value:
                start = int.from_bytes(c.vm.memory.read(c.in_gpa + 18, 2), "little")
                return CallResult(r.status, r.value - start if start else r.value + 1, r.why)
            return r

        _wrap_handler(hv, fn, wrap)


# -- isolation and lifecycle ---------------------------------------------------------------------------------------


@fault("no-source-validation", "HV-SEC-001", "the IOMMU delivers a pair whoever writes it (messages cross VMs)")
def _no_source(hv: ReferenceHypervisor) -> None:
    iommu = hv.system.platform.iommu

    def translate(requester: Requester, address: int, data: int) -> Delivery | Fault:
        try:
            index = parse(address, data)
        except MessageFormatError as e:
            return Fault(e.reason, requester, address, data, None)
        entry = iommu.table.get(index)
        if entry is None or not entry.present:
            return Fault(_not_present(), requester, address, data, index)
        return Delivery(entry.owner_vm, entry.dest_vcpu, entry.vector, index, entry.posted)

    iommu.translate = translate  # type: ignore[method-assign]


def _not_present() -> Any:
    from ..reference.platform.fault import FaultReason

    return FaultReason.NOT_PRESENT


@fault("reset-keeps-claims", "HV-RESET-001", "RESET returns to OPEN but keeps devices claimed and messages live")
def _reset(hv: ReferenceHypervisor) -> None:
    core = hv.system.core

    def reset_vm(vm: VmPort, event: VmEvent = VmEvent.VM_RESET) -> int:
        st = core.state_of(vm)
        st.features = 0
        st.move(event)
        return sum(m.count for m in st.messages.values())

    core.reset_vm = reset_vm  # type: ignore[method-assign]


@fault("flr-drops-messages", "HV-FLR-001", "an FLR frees the device's messages")
def _flr(hv: ReferenceHypervisor) -> None:
    core = hv.system.core

    def flr(vm: VmPort, key: DeviceKey) -> None:
        st = core.state_of(vm)
        claim = st.claims.get(key)
        if claim is not None:
            for h in [h for h, m in st.messages.items() if m.device == key]:
                core.messages.drop(st, claim, h)

    core.flr = flr  # type: ignore[method-assign]


@fault("migration-moves-entries", "HV-MIG-002", "the migration destination re-allocates remapping entries anew")
def _migration(hv: ReferenceHypervisor) -> None:
    remap = hv.system.core.remap
    inner = remap.alloc

    def alloc_at(base: int, count: int, **kw: Any) -> bool:
        placeholder = inner(count, **kw)  # the destination's own entry takes the first free block ...
        got = inner(count, **kw)  # ... so the VM's entry lands elsewhere, and its pair names nothing
        if placeholder is not None:
            remap.release(placeholder)
        return got is not None

    remap.alloc_at = alloc_at  # type: ignore[method-assign]


# == the rest of the hypervisor MUSTs: one fault per requirement =================================================
# Each is a bug a KVM/Xen patch could plausibly contain, made by wrapping one method of this instance.

_STATE_FREE = (FunctionNumber.VERSION, FunctionNumber.GET_INFO, FunctionNumber.NEGOTIATE, FunctionNumber.RESET)
_BATCHES = (FunctionNumber.MSG_ALLOC, FunctionNumber.MSG_RETARGET, FunctionNumber.MSG_FREE)


def _wrap_core(hv: ReferenceHypervisor, attr: str, make: Callable[[Any], Any]) -> None:
    """Replace ``hv.system.core.<attr>`` by ``make(original)``."""
    core = hv.system.core
    setattr(core, attr, make(getattr(core, attr)))


def _patch_out(c: Call, offset: int, size: int, fn: Callable[[int], int]) -> None:
    """Rewrite one little-endian field of the call's output block."""
    gpa = c.out_gpa + offset
    old = int.from_bytes(c.vm.memory.read(gpa, size), "little")
    c.vm.memory.write(gpa, (fn(old) & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))


# -- calling conventions, discovery, status codes, versioning ------------------------------------------------------


@fault(
    "unknown-fn-in-class-invalid",
    "HV-CALL-001",
    "an undefined function number inside a defined class (0x04, 0x13, 0x23) gets the inner switch's default, "
    "INVALID_PARAMETER, instead of NOT_SUPPORTED",
)
def _unknown_in_class(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def hypercall(vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
            if fn not in hv.system.core._dispatch and fn >> 4 in (0, 1, 2):
                return CallResult(Status.INVALID_PARAMETER, 0, "no such function in this class")
            return inner(vm, vcpu, fn, args)  # type: ignore[no-any-return]

        return hypercall

    _wrap_core(hv, "hypercall", make)


@fault("state-before-registers", "HV-CALL-005", "checks the VM state before the argument registers")
def _state_first(hv: ReferenceHypervisor) -> None:
    core = hv.system.core

    def make(inner: Any) -> Any:
        def hypercall(vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
            entry = core._dispatch.get(fn)
            if entry is not None and core.state_of(vm).state not in entry[0].states:
                return CallResult(Status.WRONG_STATE, 0, "state checked first")
            return inner(vm, vcpu, fn, args)  # type: ignore[no-any-return]

        return hypercall

    _wrap_core(hv, "hypercall", make)


@fault("vmcall-only", "HV-CALL-006", "on x86-64 handles VMCALL only: VMMCALL (the AMD instruction) is not a pvmsi call")
def _vmcall_only(hv: ReferenceHypervisor) -> None:
    inner = hv.trap

    def trap(vm: int, vcpu: int, arch: Any, instruction: Any, regs: list[int]) -> tuple[bool, list[int]]:
        if instruction.name == "VMMCALL":
            return False, list(regs)
        return inner(vm, vcpu, arch, instruction, regs)

    hv.trap = trap  # type: ignore[method-assign]


def _wrap_execute_trap(hv: ReferenceHypervisor, fix: Callable[[str, dict[str, int], dict[str, int]], None]) -> None:
    system = hv.system
    inner = system.execute_trap

    def execute_trap(vm: Any, vcpu: int, arch: str, instruction: str, regs: Any) -> dict[str, int] | None:
        out = inner(vm, vcpu, arch, instruction, regs)
        if out is not None:
            fix(instruction, dict(regs), out)
        return out

    system.execute_trap = execute_trap  # type: ignore[method-assign]


@fault(
    "cpuid-version-swapped", "HV-DISC-001", "the pvmsi CPUID leaf base + 1 reports the version as minor << 16 | major"
)
def _cpuid_version(hv: ReferenceHypervisor) -> None:
    from ..reference.hypervisor.arch import PVMSI_CPUID_BASE

    def fix(instruction: str, regs: dict[str, int], out: dict[str, int]) -> None:
        if instruction == "cpuid" and regs.get("rax", 0) & 0xFFFFFFFF == PVMSI_CPUID_BASE + 1:
            out["rax"] = (out["rax"] & 0xFFFF) << 16 | out["rax"] >> 16

    _wrap_execute_trap(hv, fix)


@fault("sbi-probe-absent", "HV-DISC-002", "SBI probe_extension of the pvmsi extension id answers 0 (not available)")
def _sbi_probe(hv: ReferenceHypervisor) -> None:
    def fix(instruction: str, regs: dict[str, int], out: dict[str, int]) -> None:
        if instruction == "ecall" and regs.get("a7") == 0x10 and regs.get("a6") == 3:
            out["a1"] = 0

    _wrap_execute_trap(hv, fix)


@fault("version-only-while-open", "HV-DISC-003", "VERSION fails with WRONG_STATE once the VM is NEGOTIATED")
def _version_open(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def check(call: Any, st: Any) -> None:
            if call.fn is FunctionNumber.VERSION and st.state.value != "OPEN":
                raise CallError(Status.WRONG_STATE, "VERSION only before NEGOTIATE")
            inner(call, st)

        return check

    _wrap_core(hv, "_check_state", make)


@fault(
    "info-offers-features-in-force",
    "HV-DISC-004",
    "GET_INFO reports the features in force as features_offered once the VM is NEGOTIATED",
)
def _info_in_force(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        r = inner(c)
        if r.status == Status.SUCCESS and c.st.state.value == "NEGOTIATED":
            _patch_out(c, 8, 8, lambda _old: c.st.features)
        return r

    _wrap_handler(hv, FunctionNumber.GET_INFO, wrap)


@fault("errno-status", "HV-STAT-001", "passes the host's -EINVAL (-22) through for a non-zero reserved register")
def _errno(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def hypercall(vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
            r: CallResult = inner(vm, vcpu, fn, args)
            if r.status == Status.INVALID_PARAMETER and len(args) == 4 and (args[2] or args[3]):
                return CallResult(-22, 0, r.why)
            return r

        return hypercall

    _wrap_core(hv, "hypercall", make)


@fault(
    "malformed-handle-invalid",
    "HV-STAT-002",
    "a handle whose counter half is zero is called malformed: INVALID_PARAMETER instead of UNKNOWN_HANDLE",
)
def _malformed_handle(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def owned(c: Call, key: DeviceKey, handle: int) -> Message:
            if not handle >> 32:
                raise CallError(Status.INVALID_PARAMETER, "malformed handle")
            return inner(c, key, handle)  # type: ignore[no-any-return]

        return owned

    _patch_entry(hv, "_owned", make)


class _KindDefaultsToMsix:
    """An alloc_entry codec whose kind switch falls through to MSI-X for a value it does not know."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.size = inner.size

    def unpack_from(self, raw: Any, offset: int = 0) -> Values:
        if raw[offset] not in (1, 2, 3):
            raw = bytes(raw[:offset]) + b"\x02" + bytes(raw[offset + 1 :])
        return self._inner.unpack_from(raw, offset)  # type: ignore[no-any-return]


@fault("unknown-kind-is-msix", "HV-CONV-002", "an allocate entry with an undefined kind is treated as MSI-X")
def _unknown_kind(hv: ReferenceHypervisor) -> None:
    import copy

    from ..reference.hypervisor.messages import SHAPES

    ops = hv.system.core.messages
    shape = copy.copy(SHAPES[FunctionNumber.MSG_ALLOC])
    shape.entry = _KindDefaultsToMsix(shape.entry)  # type: ignore[assignment]
    _wrap_handler(hv, FunctionNumber.MSG_ALLOC, lambda _inner, c: ops._batch(c, shape, ops._alloc_entry))


@fault("no-msg-retarget", "HV-VER-001", "reports version 1.0 but does not implement MSG_RETARGET (NOT_SUPPORTED)")
def _no_retarget(hv: ReferenceHypervisor) -> None:
    del hv.system.core._dispatch[int(FunctionNumber.MSG_RETARGET)]


# -- VM state and negotiation --------------------------------------------------------------------------------------


@fault("state-per-vcpu", "HV-STATE-001", "keeps the negotiation state per vCPU: other vCPUs of the VM stay OPEN")
def _state_per_vcpu(hv: ReferenceHypervisor) -> None:
    core = hv.system.core
    seen: dict[tuple[int, int], tuple[Any, int]] = {}

    def make(inner: Any) -> Any:
        def hypercall(vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
            st = core.state_of(vm)
            st.state, st.features = seen.get((vm.vm_id, vcpu), (VmState.OPEN, 0))
            r: CallResult = inner(vm, vcpu, fn, args)
            seen[(vm.vm_id, vcpu)] = (st.state, st.features)
            return r

        return hypercall

    _wrap_core(hv, "hypercall", make)


@fault("minor-unchecked", "HV-NEG-001", "NEGOTIATE checks version_major only, accepting any version_minor")
def _minor(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        config = c.st.config
        c.st.config = replace(config, version_minor=0xFFFF)
        try:
            return inner(c)
        finally:
            c.st.config = config

    _wrap_handler(hv, FunctionNumber.NEGOTIATE, wrap)


@fault(
    "kindless-features-accepted",
    "HV-NEG-003",
    "NEGOTIATE accepts a feature set without any message-kind bit (MSI, MSIX, IMS)",
)
def _kindless(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        r = inner(c)
        if r.status == Status.INVALID_PARAMETER and c.st.state.value == "OPEN" and not r.why:
            refused = int.from_bytes(c.vm.memory.read(c.out_gpa + 8, 8), "little")
            if not refused:  # offered bits only, but no kind: accepted
                c.st.features = int.from_bytes(c.vm.memory.read(c.in_gpa + 8, 8), "little")
                c.st.move(VmEvent.NEGOTIATE_ACCEPTED)
                c.vm.memory.write(c.out_gpa, c.st.features.to_bytes(8, "little") + bytes(8))
                return CallResult(Status.SUCCESS, c.st.features)
        return r

    _wrap_handler(hv, FunctionNumber.NEGOTIATE, wrap)


@fault("negotiate-value-zero", "HV-NEG-005", "an accepted NEGOTIATE returns 0 in the value register, not the features")
def _neg_value(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        r = inner(c)
        return CallResult(r.status, 0, r.why) if r.status == Status.SUCCESS else r

    _wrap_handler(hv, FunctionNumber.NEGOTIATE, wrap)


@fault(
    "posted-withdrawn",
    "HV-NEG-007",
    "accepts POSTED, then drops it from the features in force (the host lacks posted interrupts)",
)
def _posted_withdrawn(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        r = inner(c)
        if r.status == Status.SUCCESS:
            c.st.features &= ~int(Feature.POSTED)
        return r

    _wrap_handler(hv, FunctionNumber.NEGOTIATE, wrap)


@fault("posted-unchecked", "HV-NEG-008", "MSG_ALLOC accepts the POSTED flag when POSTED was not negotiated")
def _posted_unchecked(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def target(c: Call, vcpu: int, vector: int, count: int, flags: int) -> None:
            posted = int(DeliveryFlag.POSTED)
            inner(c, vcpu, vector, count, flags & ~posted if not c.st.features & Feature.POSTED else flags)

        return target

    _patch_entry(hv, "_target", make)


# -- devices -------------------------------------------------------------------------------------------------------


def _wrap_lookup(hv: ReferenceHypervisor, make: Callable[[Any], Any]) -> None:
    _wrap_core(hv, "lookup_fields", make)


@fault("segment-ignored", "HV-DEV-001", "looks devices up by bus and devfn only, ignoring the segment")
def _segment(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        return lambda c, segment, bus, devfn, flags, sub: inner(c, 0, bus, devfn, flags, sub)

    _wrap_lookup(hv, make)


@fault("subdevice-id-masked", "HV-DEV-002", "masks subdevice_id to 20 bits instead of rejecting the higher bits")
def _sub_masked(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        return lambda c, segment, bus, devfn, flags, sub: inner(c, segment, bus, devfn, flags, sub & 0xFFFFF)

    _wrap_lookup(hv, make)


@fault("unknown-subdevice-is-parent", "HV-DEV-003", "a sub-device id that names no sub-device falls back to the parent")
def _sub_parent(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def lookup(c: Call, segment: int, bus: int, devfn: int, flags: int, sub: int) -> Any:
            try:
                return inner(c, segment, bus, devfn, flags, sub)
            except CallError as e:
                if e.status != Status.UNKNOWN_DEVICE or not flags & 1:
                    raise
                return inner(c, segment, bus, devfn, flags & ~1, 0)

        return lookup

    _wrap_lookup(hv, make)


@fault(
    "msix-size-minus-one",
    "HV-DEV-004",
    "DEVICE_QUERY reports the MSI-X Table Size field as encoded in the capability (N - 1), not N",
)
def _msix_size(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        r = inner(c)
        if r.status == Status.SUCCESS:
            _patch_out(c, 30, 2, lambda n: n - 1 if n else 0)
        return r

    _wrap_handler(hv, FunctionNumber.DEVICE_QUERY, wrap)


@fault(
    "claim-masks-kinds",
    "HV-DEV-006",
    "DEVICE_CLAIM silently drops the kinds the device lacks instead of failing with INVALID_PARAMETER",
)
def _claim_masks(hv: ReferenceHypervisor) -> None:
    from ..reference.hypervisor.core import device_kinds
    from ..spec.formats import CLAIM_IN

    core = hv.system.core

    def make(inner: Any) -> Any:
        def read_input(c: Call, fmt: Any, out_fmt: Any | None = None) -> Any:
            req = inner(c, fmt, out_fmt)
            if fmt is CLAIM_IN:
                _key, dev = core.lookup(c, req.device)
                supported = int(req.kinds) & device_kinds(dev)
                if supported:
                    req.kinds = supported
            return req

        return read_input

    _wrap_core(hv, "read_input", make)


@fault("claim-limit-off-by-one", "HV-DEV-008", "lets a VM claim max_claimed_devices + 1 devices")
def _claim_limit(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        config = c.st.config
        c.st.config = replace(config, max_claimed_devices=config.max_claimed_devices + 1)
        try:
            return inner(c)
        finally:
            c.st.config = config

    _wrap_handler(hv, FunctionNumber.DEVICE_CLAIM, wrap)


@fault("release-idempotent", "HV-DEV-010", "DEVICE_RELEASE of a device that is not claimed succeeds (freeing nothing)")
def _release_idempotent(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        try:
            return inner(c)
        except CallError as e:
            if e.status == Status.WRONG_STATE:
                return CallResult(Status.SUCCESS, 0)
            raise

    _wrap_handler(hv, FunctionNumber.DEVICE_RELEASE, wrap)


@fault(
    "subdevice-keyed-by-bdf",
    "HV-DEV-012",
    "keys claims by segment/bus/devfn only, so a sub-device's claim is its parent's",
)
def _sub_key(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def lookup(c: Call, segment: int, bus: int, devfn: int, flags: int, sub: int) -> Any:
            key, dev = inner(c, segment, bus, devfn, flags, sub)
            return (key[0], key[1], key[2], None), dev

        return lookup

    _wrap_lookup(hv, make)


# -- messages ------------------------------------------------------------------------------------------------------


@fault(
    "unclaimed-handles-unknown",
    "HV-ALLOC-001",
    "MSG_RETARGET and MSG_FREE on an unclaimed device answer UNKNOWN_HANDLE instead of WRONG_STATE",
)
def _unclaimed(hv: ReferenceHypervisor) -> None:
    for fn in (FunctionNumber.MSG_RETARGET, FunctionNumber.MSG_FREE):

        def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
            try:
                return inner(c)
            except CallError as e:
                if e.status == Status.WRONG_STATE:
                    raise CallError(Status.UNKNOWN_HANDLE, "no handle of that device") from None
                raise

        _wrap_handler(hv, fn, wrap)


@fault(
    "kind-vs-device-kinds",
    "HV-ALLOC-002",
    "checks an allocate entry's kind against the device's kinds, not the claimed kinds",
)
def _kind_claimed(hv: ReferenceHypervisor) -> None:
    from ..reference.hypervisor.core import device_kinds

    def make(inner: Any) -> Any:
        def alloc(c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
            kinds = claim.kinds
            claim.kinds |= device_kinds(claim.device)
            try:
                return inner(c, key, claim, e)  # type: ignore[no-any-return]
            finally:
                claim.kinds = kinds

        return alloc

    _patch_entry(hv, "_alloc_entry", make)


@fault(
    "slot-overwrite",
    "HV-ALLOC-005",
    "an allocate entry for a slot holding a live message replaces it (the old one leaks)",
)
def _slot_overwrite(hv: ReferenceHypervisor) -> None:
    from ..spec.constants import MsgKind

    def make(inner: Any) -> Any:
        def alloc(c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
            if e[0] in (1, 2, 3):
                claim.slots.discard((MsgKind(e[0]), e[3]))
            return inner(c, key, claim, e)  # type: ignore[no-any-return]

        return alloc

    _patch_entry(hv, "_alloc_entry", make)


@fault(
    "irte-to-boot-cpu",
    "HV-ALLOC-007",
    "programs every new remapping entry to deliver to vCPU 0, ignoring the entry's vcpu",
)
def _boot_cpu(hv: ReferenceHypervisor) -> None:
    remap = hv.system.core.remap
    inner = remap.alloc

    def alloc(count: int, *, vcpu: int, **kw: Any) -> int | None:
        return inner(count, vcpu=0, **kw)

    remap.alloc = alloc  # type: ignore[method-assign]


@fault("msi-block-one-vector", "HV-ALLOC-008", "programs every entry of an MSI block with the block's first vector")
def _msi_block(hv: ReferenceHypervisor) -> None:
    remap = hv.system.core.remap
    table = hv.system.platform.table
    inner = remap.alloc

    def alloc(count: int, *, vector: int, **kw: Any) -> int | None:
        base = inner(count, vector=vector, **kw)
        if base is not None:
            for i in range(1, count):
                table.update(base + i, vector=vector)
        return base

    remap.alloc = alloc  # type: ignore[method-assign]


@fault("msi-block-counted-once", "HV-ALLOC-009", "accounts an MSI block of n vectors as one message against the quotas")
def _msi_counted(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def alloc(c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
            result: Values = inner(c, key, claim, e)
            n = e[2]
            claim.vectors -= n - 1
            c.st.vectors -= n - 1
            return result

        return alloc

    _patch_entry(hv, "_alloc_entry", make)


@fault("retarget-any-device", "HV-RETGT-001", "MSG_RETARGET accepts a handle the VM holds for another of its devices")
def _retarget_any(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def retarget(c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
            msg = c.st.messages.get(e[0])
            if msg is not None and msg.device != key:
                key, claim = msg.device, c.st.claims[msg.device]
            return inner(c, key, claim, e)  # type: ignore[no-any-return]

        return retarget

    _patch_entry(hv, "_retarget_entry", make)


@fault(
    "rewrite-always", "HV-RETGT-003", "sets PVMSI_RETARGET_REWRITE in every retarget result, even when the pair is kept"
)
def _rewrite_always(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def retarget(c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
            address, data, status, flags, r = inner(c, key, claim, e)
            return (address, data, status, flags | 1, r)

        return retarget

    _patch_entry(hv, "_retarget_entry", make)


# -- batches -------------------------------------------------------------------------------------------------------


def _header(c: Call) -> tuple[int, int]:
    """count and start of the batch_in at the call's input address."""
    raw = c.vm.memory.read(c.in_gpa + 16, 4)
    return int.from_bytes(raw[0:2], "little"), int.from_bytes(raw[2:4], "little")


@fault("start-at-count-is-done", "HV-BATCH-001", "a batch with start >= count is an already finished batch: SUCCESS")
def _start_done(hv: ReferenceHypervisor) -> None:
    for fn in _BATCHES:

        def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
            try:
                return inner(c)
            except CallError as e:
                if "HV-BATCH-001" in e.why:
                    count, start = _header(c)
                    if 1 <= count <= c.st.config.max_batch:
                        return CallResult(Status.SUCCESS, start)
                raise

        _wrap_handler(hv, fn, wrap)


@fault(
    "whole-blocks-before-device",
    "HV-CALL-005",
    "checks a batch's whole input and output blocks before the device its header names",
)
def _blocks_before_device(hv: ReferenceHypervisor) -> None:
    from ..reference.hypervisor.messages import HDR_SIZE, OUT_HDR_SIZE, SHAPES

    core = hv.system.core

    def make(entry_size: int, result_size: int) -> Callable[[Callable[[Call], CallResult], Call], CallResult]:
        def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
            try:
                return inner(c)
            except CallError as e:
                if "HV-DEV-001" not in e.why and "HV-ALLOC-001" not in e.why:
                    raise
                # the device check failed, so the header's address and contents passed: as if the whole
                # blocks had been checked first (the header is read again only on this failing path)
                count, _start = _header(c)
                in_size, out_size = HDR_SIZE + count * entry_size, OUT_HDR_SIZE + count * result_size
                core.rules.blocks(c.vm.memory, c.in_gpa, in_size, c.out_gpa, out_size)
                raise

        return wrap

    for fn in _BATCHES:
        _wrap_handler(hv, fn, make(SHAPES[fn].entry.size, SHAPES[fn].result.size))


@fault(
    "failed-batch-rolled-back", "HV-BATCH-003", "a failing MSG_ALLOC entry rolls back the entries completed before it"
)
def _rollback(hv: ReferenceHypervisor) -> None:
    core = hv.system.core

    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        before = set(c.st.messages)
        r = inner(c)
        if r.status < 0:
            for h in set(c.st.messages) - before:
                core.messages.drop(c.st, c.st.claims[c.st.messages[h].device], h)
        return r

    _wrap_handler(hv, FunctionNumber.MSG_ALLOC, wrap)


@fault(
    "yield-before-first-entry",
    "HV-BATCH-006",
    "a yielding hypervisor returns INCOMPLETE with no entry done on every other call",
)
def _yield_early(hv: ReferenceHypervisor) -> None:
    from ..reference.hypervisor.messages import FAST_BATCH_OUT

    calls = [0]
    for fn in _BATCHES:

        def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
            if c.st.config.yield_after is not None and c.st.claims:
                calls[0] += 1
                if calls[0] % 2 == 0:  # "need_resched" checked before the first entry
                    _count, start = _header(c)
                    c.vm.memory.write(c.out_gpa, FAST_BATCH_OUT.pack(start, 0, int(Status.INCOMPLETE), 0))
                    return CallResult(Status.INCOMPLETE, start)
            return inner(c)

        _wrap_handler(hv, fn, wrap)


@fault(
    "resume-replays-failure",
    "HV-BATCH-008",
    "remembers a batch's failing entry and answers a resume at that index with the old error, without re-reading it",
)
def _replay_failure(hv: ReferenceHypervisor) -> None:
    from ..reference.hypervisor.messages import FAST_BATCH_OUT

    failed: dict[tuple[int, int], tuple[int, int]] = {}
    for fn in _BATCHES:

        def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
            key = (c.vm.vm_id, c.in_gpa)
            if key in failed:
                index, status = failed.pop(key)
                if _header(c)[1] == index:
                    c.vm.memory.write(c.out_gpa, FAST_BATCH_OUT.pack(index, 0, status, 0))
                    return CallResult(status, index)
            r = inner(c)
            if r.status < 0 and not r.why and r.value:  # an entry after the first failed (the header passed)
                failed[key] = (r.value, r.status)
            return r

        _wrap_handler(hv, fn, wrap)


# -- memory rules --------------------------------------------------------------------------------------------------


class _RamAsParameter(MemoryRules):
    def block(self, memory: GuestMemory, gpa: int, size: int, what: str) -> None:
        if gpa % ALIGN == 0 and gpa // PAGE == (gpa + size - 1) // PAGE and not memory.is_ram(gpa, size):
            raise CallError(Status.INVALID_PARAMETER, "guest memory access failed (-EFAULT mapped to EINVAL)")
        super().block(memory, gpa, size, what)


@fault(
    "efault-as-invalid-parameter",
    "HV-MEM-003",
    "a block outside guest RAM fails with INVALID_PARAMETER (-EFAULT as EINVAL)",
)
def _efault(hv: ReferenceHypervisor) -> None:
    hv.system.core.rules = _RamAsParameter()


@fault("query-clears-output-first", "HV-MEM-006", "DEVICE_QUERY zeroes its output block before it looks the device up")
def _clear_first(hv: ReferenceHypervisor) -> None:
    def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
        try:
            return inner(c)
        except CallError as e:
            if e.status == Status.UNKNOWN_DEVICE:
                c.vm.memory.write(c.out_gpa, bytes(48))
            raise

    _wrap_handler(hv, FunctionNumber.DEVICE_QUERY, wrap)


@fault("no-batch-out-when-nothing-done", "HV-MEM-007", "writes no batch_out when the first entry of a batch fails")
def _no_batch_out(hv: ReferenceHypervisor) -> None:
    for fn in _BATCHES:

        def wrap(inner: Callable[[Call], CallResult], c: Call) -> CallResult:
            mem = c.vm.memory
            saved = mem.read(c.out_gpa, 16) if mem.is_ram(c.out_gpa, 16) else None
            r = inner(c)
            if r.status < 0 and not r.why and saved is not None and mem.read(c.out_gpa + 2, 2) == b"\0\0":
                mem.write(c.out_gpa, saved)  # nothing completed: the header "need not" be written
            return r

        _wrap_handler(hv, fn, wrap)


# -- security ------------------------------------------------------------------------------------------------------


def _deliver_despite(hv: ReferenceHypervisor, reason: str) -> None:
    """The IOMMU delivers a remapped message that source validation blocked for ``reason``."""
    iommu = hv.system.platform.iommu
    inner = iommu.translate

    def translate(requester: Requester, address: int, data: int) -> Delivery | Fault:
        r = inner(requester, address, data)
        if isinstance(r, Fault) and r.reason.name == reason and r.irte_index is not None:
            entry = iommu.table.get(r.irte_index)
            if entry is not None:
                return Delivery(entry.owner_vm, entry.dest_vcpu, entry.vector, r.irte_index, entry.posted)
        return r

    iommu.translate = translate  # type: ignore[method-assign]


@fault(
    "pasid-not-validated", "HV-SEC-002", "source validation checks the requester id but not the PASID of a sub-device"
)
def _pasid(hv: ReferenceHypervisor) -> None:
    _deliver_despite(hv, "PASID_MISMATCH")


@fault(
    "isolated-without-source-validation",
    "HV-DEV-005",
    "reports PVMSI_DEV_ISOLATED, but the platform delivers a message whichever requester id wrote it",
)
def _isolated_unvalidated(hv: ReferenceHypervisor) -> None:
    _deliver_despite(hv, "SOURCE_ID_MISMATCH")


@fault(
    "foreign-handle-not-permitted", "HV-SEC-003", "another VM's handle gets NOT_PERMITTED, unlike a handle never issued"
)
def _foreign_handle(hv: ReferenceHypervisor) -> None:
    core = hv.system.core

    def make(inner: Any) -> Any:
        def owned(c: Call, key: DeviceKey, handle: int) -> Message:
            try:
                return inner(c, key, handle)  # type: ignore[no-any-return]
            except CallError:
                others = [st for vm_id, st in core.vm_states().items() if vm_id != c.vm.vm_id]
                if any(handle in st.messages for st in others):
                    raise CallError(Status.NOT_PERMITTED, "handle of another VM") from None
                raise

        return owned

    _patch_entry(hv, "_owned", make)


@fault(
    "handle-is-irte-index",
    "HV-SEC-005",
    "derives the handle from the remapping index, so a reused entry reissues a handle",
)
def _handle_index(hv: ReferenceHypervisor) -> None:
    import secrets

    salt = secrets.randbits(32)

    def make(inner: Any) -> Any:
        def alloc(c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
            handle, address, data, status = inner(c, key, claim, e)
            msg = c.st.messages.pop(handle)
            msg.handle = (msg.irte + 1) << 32 | salt
            c.st.messages[msg.handle] = msg
            return (msg.handle, address, data, status)

        return alloc

    _patch_entry(hv, "_alloc_entry", make)


@fault(
    "quota-charged-on-full-table",
    "HV-SEC-007",
    "an entry refused for a full remapping table still takes its slot and quota",
)
def _charged(hv: ReferenceHypervisor) -> None:
    from ..spec.constants import MsgKind

    def make(inner: Any) -> Any:
        def alloc(c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
            try:
                return inner(c, key, claim, e)  # type: ignore[no-any-return]
            except CallError as err:
                if "HV-SEC-007" in err.why:
                    claim.slots.add((MsgKind(e[0]), e[3]))
                    claim.vectors += e[2]
                    c.st.vectors += e[2]
                raise

        return alloc

    _patch_entry(hv, "_alloc_entry", make)


@fault("host-vector-in-data", "HV-SEC-008", "leaves the host vector in data[31:24] of every pair it hands out")
def _host_vector(hv: ReferenceHypervisor) -> None:
    remap = hv.system.core.remap
    inner = remap.compose

    def compose(base: int) -> tuple[int, int]:
        address, data = inner(base)
        return address, data | (0x20 + base % 0xD0) << 24

    remap.compose = compose  # type: ignore[method-assign]


@fault(
    "destroy-leaks-entries",
    "HV-SEC-009",
    "destroying a VM drops its pvmsi bookkeeping but skips the teardown that releases its remapping entries",
)
def _destroy(hv: ReferenceHypervisor) -> None:
    system = hv.system

    def destroy_vm(vm: Any) -> int:
        system.core.forget_vm(vm)
        del system.vms[vm.vm_id]
        return 0

    system.destroy_vm = destroy_vm  # type: ignore[method-assign]


# -- lifecycle -----------------------------------------------------------------------------------------------------


@fault(
    "vm-reset-not-hooked",
    "HV-RESET-002",
    "a VM reset resets the devices but leaves the pvmsi state (features, claims, messages)",
)
def _vm_reset(hv: ReferenceHypervisor) -> None:
    system = hv.system

    def reset_vm(vm: Any) -> int:
        for dev in system.platform.devices_of(vm.vm):
            system.platform.flr(dev)
        return 0

    system.reset_vm = reset_vm  # type: ignore[method-assign]


@fault("reset-needs-negotiated", "HV-RESET-003", "RESET fails with WRONG_STATE while the VM is OPEN")
def _reset_open(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def check(call: Any, st: Any) -> None:
            if call.fn is FunctionNumber.RESET and st.state is VmState.OPEN:
                raise CallError(Status.WRONG_STATE, "nothing to reset")
            inner(call, st)

        return check

    _wrap_core(hv, "_check_state", make)


@fault(
    "unplug-leaks-messages",
    "HV-UNPLUG-001",
    "hot-unplug ends the claim but leaks the device's messages and remapping entries",
)
def _unplug(hv: ReferenceHypervisor) -> None:
    core = hv.system.core

    def hot_unplug(vm: VmPort, key: DeviceKey) -> int:
        st = core.state_of(vm)
        for k in [k for k in st.claims if k[:3] == key[:3]]:
            del st.claims[k]
        return 0

    core.hot_unplug = hot_unplug  # type: ignore[method-assign]


@fault("migration-new-handles", "HV-MIG-001", "the migration destination issues the VM's messages new handles")
def _mig_handles(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def adopt_vm(vm: VmPort, st: Any) -> None:
            messages = list(st.messages.values())
            st.messages = {}
            for m in messages:
                m.handle = st.handles.next()
                st.messages[m.handle] = m
            inner(vm, st)

        return adopt_vm

    _wrap_core(hv, "adopt_vm", make)


@fault(
    "migration-resumes-emulation", "HV-MIG-003", "the migration destination traps and emulates the claimed kinds again"
)
def _mig_emulation(hv: ReferenceHypervisor) -> None:
    def make(inner: Any) -> Any:
        def adopt_vm(vm: VmPort, st: Any) -> None:
            inner(vm, st)
            for claim in st.claims.values():
                vm.set_emulation(claim.device, claim.kinds, trapped=True)

        return adopt_vm

    _wrap_core(hv, "adopt_vm", make)
