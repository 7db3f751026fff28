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
from ..reference.hypervisor.core import Call, CallResult
from ..reference.hypervisor.errors import CallError
from ..reference.hypervisor.ports import GuestMemory, VmPort
from ..reference.hypervisor.vmstate import Claim, DeviceKey, Message
from ..reference.platform.iommu import Delivery, Fault
from ..reference.platform.msi_format import MessageFormatError, parse
from ..reference.platform.requester import Requester
from ..spec.constants import FunctionNumber, Status
from ..spec.fastcodec import Values
from ..spec.states import VmEvent


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


@fault("not-supported-for-bad-registers", "HV-CALL-002", "answers a reserved register with NOT_SUPPORTED")
def _not_supported(hv: ReferenceHypervisor) -> None:
    core = hv.system.core
    inner = core._check_registers

    def check(call: Any, args: Sequence[int]) -> None:
        try:
            inner(call, args)
        except CallError as e:
            raise CallError(Status.NOT_SUPPORTED, e.why) from None

    core._check_registers = check  # type: ignore[method-assign]


@fault("ignore-reserved-registers", "HV-CALL-003", "ignores non-zero reserved argument registers")
def _ignore_registers(hv: ReferenceHypervisor) -> None:
    core = hv.system.core
    inner = core._check_registers
    core._check_registers = lambda call, args: inner(call, (args[0], args[1], 0, 0))  # type: ignore[method-assign]


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
