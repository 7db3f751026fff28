"""The reference hypervisor core: one pvmsi hypercall in, one result out (sans-I/O, as h11 is for HTTP).

:meth:`HypervisorCore.hypercall` takes the function number, the four argument registers and the VM (its
memory, devices and vCPUs through :mod:`.ports`) and returns the status and value registers.  It enforces every
hypervisor requirement of the spec; each check cites the requirement id it implements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from ...spec.calls import CALLS_BY_FN, CallDef
from ...spec.codec import DecodeError, decode, encode
from ...spec.constants import (
    DeviceFlag,
    DeviceIdFlag,
    EventType,
    Feature,
    FunctionNumber,
    KindMask,
    MsgKind,
    Status,
)
from ...spec.formats import CLAIM_IN, DEVICE_ID, DEVICE_INFO, HV_INFO, NEGOTIATE_IN, NEGOTIATE_OUT
from ...spec.kinds import kind_bit
from ...spec.layout import layout_of
from ...spec.states import DeviceEvent, VmEvent, VmState
from ...spec.version import encode_version
from .blocks import MemoryRules
from .call import Call, CallResult
from .checkorder import OrderedChecks
from .config import HypervisorConfig
from .errors import CallError, decode_failure
from .events import EventCalls
from .ports import AssignedDevice, RemapPort, VmPort
from .vmstate import Claim, DeviceKey, HandleSource, Message, VmPvmsi, device_event

KIND_FEATURE = {MsgKind.MSI: Feature.MSI, MsgKind.MSIX: Feature.MSIX, MsgKind.IMS: Feature.IMS}
PASID_MASK = (1 << 20) - 1
#: What a call handler is: the call in progress in, the status and value registers out.
Handler = Callable[[Call], CallResult]


def size_of(fmt: Any) -> int:
    return layout_of(fmt).size


def device_kinds(dev: AssignedDevice) -> int:
    """The KindMask of what a device supports."""
    kinds = KindMask(0)
    if dev.msi_max_vectors:
        kinds |= KindMask.MSI
    if dev.msix_table_size:
        kinds |= KindMask.MSIX
    if dev.ims_slots:
        kinds |= KindMask.IMS
    return int(kinds)


class HypervisorCore(OrderedChecks, EventCalls):
    """pvmsi for every VM of one hypervisor.

    Every step of a call is a public method that a subclass may override (conformance's deliberately faulty
    hypervisors each override one); each cites the spec section or requirement it implements.  The steps of
    every call: :meth:`check_registers`, :meth:`check_state`, then the call's handler from :attr:`dispatch`
    (made by :meth:`handler`), which reads its input through :meth:`read_input` and looks devices up through
    :meth:`lookup_fields`.  The message calls and their steps come from :class:`~.messages.MessageCalls`, the
    event calls and hooks (:meth:`~.events.EventCalls.queue_event`) from :class:`~.events.EventCalls`; the memory
    rules are the :class:`~.blocks.MemoryRules` that :meth:`make_rules` makes.
    """

    def __init__(self, config: HypervisorConfig, remap: RemapPort) -> None:
        self.config = config
        self.remap = remap
        self._vms: dict[int, VmPvmsi] = {}
        self.rules = self.make_rules()
        #: Function number -> (the call's definition in the spec's call table, its handler); a number not here
        #: is not implemented (HV-CALL-001).
        self.dispatch: dict[int, tuple[CallDef, Handler]] = {}
        for fn, call in CALLS_BY_FN.items():
            handler = self.handler(call.fn)
            if handler is not None:
                self.dispatch[fn] = (call, handler)

    # -- factories ------------------------------------------------------------------------------------------

    def make_rules(self) -> MemoryRules:
        """The memory rules this core applies to every parameter block (spec "Memory rules")."""
        return MemoryRules()

    def handler(self, fn: FunctionNumber) -> Handler | None:
        """The handler of call ``fn``, or None for a call this core does not implement; a 1.0 hypervisor
        implements every call of the spec's call table (HV-VER-001).  Called once per call, when the core is
        made."""
        handlers: dict[FunctionNumber, Handler] = {
            FunctionNumber.VERSION: self.version,
            FunctionNumber.GET_INFO: self.get_info,
            FunctionNumber.NEGOTIATE: self.negotiate,
            FunctionNumber.RESET: self.reset,
            FunctionNumber.DEVICE_QUERY: self.device_query,
            FunctionNumber.DEVICE_CLAIM: self.device_claim,
            FunctionNumber.DEVICE_RELEASE: self.device_release,
            FunctionNumber.MSG_ALLOC: self.msg_alloc,
            FunctionNumber.MSG_ACTIVATE: self.msg_activate,
            FunctionNumber.MSG_FREE: self.msg_free,
            FunctionNumber.MSG_DEACTIVATE: self.msg_deactivate,
            FunctionNumber.EVENT_CONFIG: self.event_config,
            FunctionNumber.EVENT_FETCH: self.event_fetch,
            FunctionNumber.EVENT_ACK: self.event_ack,
        }
        return handlers.get(fn)

    # -- VM bookkeeping -------------------------------------------------------------------------------------

    def state_of(self, vm: VmPort) -> VmPvmsi:
        st = self._vms.get(vm.vm_id)
        if st is None:
            seed = self.config.handle_seed
            st = VmPvmsi(HandleSource(None if seed is None else seed + vm.vm_id), self.config)
            self._vms[vm.vm_id] = st
        return st

    def configure_vm(self, vm: VmPort, config: HypervisorConfig) -> None:
        """Give one VM its own offer and limits (the harness's per-VM knobs); only before it negotiates."""
        st = self.state_of(vm)
        if st.state is not VmState.OPEN:
            raise ValueError("a VM's configuration can change only while it is OPEN")
        st.config = config
        self.remap.limit_share(vm.vm_id, config.max_remap_entries)  # the VM's share (HV-QUOTA-001)

    # -- the one entry point --------------------------------------------------------------------------------

    def hypercall(self, vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        """Execute one pvmsi call: the function number (HV-CALL-001), the argument registers, the VM state, then
        the call itself (HV-CALL-005 gives the order of the checks)."""
        entry = self.dispatch.get(fn)
        if entry is None:
            return CallResult(Status.NOT_SUPPORTED, 0, f"no call {fn:#x}", "HV-CALL-001")
        call, handler = entry
        try:
            self.check_registers(call, args)
            st = self._vms.get(vm.vm_id) or self.state_of(vm)
            self.check_state(call, st)
            return handler(Call(vm, st, vcpu, args, call.name))
        except CallError as e:
            return self.failed(e)

    def failed(self, e: CallError) -> CallResult:
        """The registers of a failed call: its status, and zero in the value register (HV-CALL-004)."""
        return CallResult(e.status, 0, e.why, e.requirement)

    def check_registers(self, call: CallDef, args: Sequence[int]) -> None:
        """Four argument registers; the reserved ones zero, a block address exactly where the call has a block
        (HV-CALL-003)."""
        if len(args) != 4:
            raise CallError(Status.INVALID_PARAMETER, "HV-CALL-003", "four argument registers expected")
        in_gpa, out_gpa, a2, a3 = args
        if a2 or a3:
            raise CallError(Status.INVALID_PARAMETER, "HV-CALL-003", "reserved argument register is not zero")
        if (call.input is None) != (in_gpa == 0):
            raise CallError(Status.INVALID_PARAMETER, "HV-CALL-003", "input block address register is wrong")
        if (call.output is None) != (out_gpa == 0):
            raise CallError(Status.INVALID_PARAMETER, "HV-CALL-003", "output block address register is wrong")

    def check_state(self, call: CallDef, st: VmPvmsi) -> None:
        """The call's valid states come from the spec's call table (HV-STATE-001, HV-STATE-002, HV-NEG-006)."""
        if st.state not in call.states:
            if call.fn is FunctionNumber.NEGOTIATE:
                requirement = "HV-NEG-006"
            else:
                requirement = "HV-STATE-002" if call.needs_negotiation else "HV-STATE-001"
            raise CallError(Status.WRONG_STATE, requirement, f"{call.name} is not valid in {st.state.value}")

    def read_input(self, c: Call, fmt: Any, out_fmt: Any | None = None) -> Any:
        """Check the input (and output) block addresses (spec "Memory rules"), read the input once
        (HV-MEM-005) and decode it (:meth:`decode_input`)."""
        size = size_of(fmt)
        if out_fmt is None:
            self.rules.block(c.vm.memory, c.in_gpa, size, "input")
        else:
            self.rules.blocks(c.vm.memory, c.in_gpa, size, c.out_gpa, size_of(out_fmt))
        return self.decode_input(fmt, c.vm.memory.read(c.in_gpa, size))  # HV-MEM-005: the only read of this block

    def decode_input(self, fmt: Any, raw: bytes) -> Any:
        """Decode an input block strictly: reserved fields zero, no undefined flag bit (HV-CONV-001), enumerated
        fields defined (HV-CONV-002)."""
        try:
            return decode(fmt, raw)
        except DecodeError as e:
            raise decode_failure(e) from None

    def write_output(self, c: Call, fmt: Any, value: Mapping[str, Any]) -> None:
        """Encode ``value`` as ``fmt`` into the call's output block, its reserved fields zero (HV-SEC-008)."""
        c.vm.memory.write(c.out_gpa, encode(fmt, value))

    # -- devices -------------------------------------------------------------------------------------------------

    def lookup(self, c: Call, dev_id: Any) -> tuple[DeviceKey, AssignedDevice]:
        """Resolve a decoded device_id the guest gave through :meth:`lookup_fields` (HV-DEV-001..003)."""
        return self.lookup_fields(c, dev_id.segment, dev_id.bus, dev_id.devfn, int(dev_id.flags), dev_id.subdevice_id)

    def lookup_fields(
        self, c: Call, segment: int, bus: int, devfn: int, flags: int, subdevice_id: int
    ) -> tuple[DeviceKey, AssignedDevice]:
        """Resolve a device identity given as its fields: by the numbers the guest sees (HV-DEV-001), its
        subdevice_id checked (HV-DEV-002, HV-NEG-008) and naming a sub-device (HV-DEV-003); a sub-device is a
        device of its own, keyed by its id (HV-DEV-012)."""
        sub = bool(flags) and bool(flags & DeviceIdFlag.SUBDEVICE)  # the IntFlag test only when a flag is set
        self.verdict(c, "devid-subdevice-flag", not sub and subdevice_id)
        self.verdict(c, "devid-subdevice-bits", subdevice_id & ~PASID_MASK)
        self.verdict(c, "devid-subdevice-feature", sub and not c.st.features & Feature.SUBDEVICE)
        pasid = subdevice_id if sub else None
        dev = c.vm.device(segment, bus, devfn, pasid)
        self.verdict(c, "devid-unknown", dev is None)
        # dev is None here only under a swapped-order fault, whose next check ends the call (checkorder.py)
        return (segment, bus, devfn, pasid), cast(AssignedDevice, dev)

    # -- calls ---------------------------------------------------------------------------------------------------

    def version(self, c: Call) -> CallResult:
        """VERSION: the highest version implemented, in every state (HV-DISC-003)."""
        cfg = c.st.config
        return CallResult(Status.SUCCESS, encode_version(cfg.version_major, cfg.version_minor))

    def get_info(self, c: Call) -> CallResult:
        """GET_INFO: :meth:`hv_info` into the output block, in every state (HV-DISC-004)."""
        self.rules.block(c.vm.memory, c.out_gpa, size_of(HV_INFO), "output")
        self.write_output(c, HV_INFO, self.hv_info(c))
        return CallResult(Status.SUCCESS)

    def vm_quota(self, c: Call) -> int:
        """The VM's quota as GET_INFO reports it: the configured one, at most the VM's share of the remapping
        table, which its emulated MSI/MSI-X vectors use too (HV-QUOTA-001, HV-QUOTA-002)."""
        share = self.remap.share(c.vm.vm_id)
        quota = c.st.config.max_messages_per_vm
        return quota if share is None else min(quota, share)

    def hv_info(self, c: Call) -> dict[str, Any]:
        """The fields of hv_info: the offer and the limits of the VM's configuration (HV-DISC-004)."""
        cfg = c.st.config
        return {
            "version_major": cfg.version_major,
            "version_minor": cfg.version_minor,
            "message_format": cfg.message_format,
            "features_offered": cfg.features_offered,
            "features_required": cfg.features_required,
            "max_batch": cfg.max_batch,
            "max_claimed_devices": cfg.max_claimed_devices,
            "max_messages_per_vm": self.vm_quota(c),
            "max_messages_per_device": cfg.max_messages_per_device,
        }

    def negotiate(self, c: Call) -> CallResult:
        """NEGOTIATE (spec "Negotiation"): the version (HV-NEG-001), then the features: offered (HV-NEG-002),
        naming a message kind (HV-NEG-003), holding every required one (HV-NEG-004); accepted, they are in force
        (HV-NEG-005) through :meth:`accept_features`."""
        req = self.read_input(c, NEGOTIATE_IN, NEGOTIATE_OUT)

        self.check_version(c, req.version_major, req.version_minor)  # writes nothing (HV-NEG-001)
        features = int(req.features)
        unoffered = self.unoffered_features(c, features)
        missing = self.missing_features(c, features)
        refused = {"unoffered": unoffered, "no-kind": 0, "required": missing}  # what each refusal reports
        try:
            self.verdict(c, "unoffered", unoffered)  # HV-NEG-002
            self.verdict(c, "no-kind", not self.names_a_kind(features))  # HV-NEG-003
            self.verdict(c, "required", missing)  # HV-NEG-004
        except CallError as e:
            if e.check not in refused:
                raise
            if e.check == "required":
                c.st.move(VmEvent.NEGOTIATE_REFUSED)
            self.write_output(c, NEGOTIATE_OUT, {"features": 0, "refused": refused[e.check]})
            return CallResult(e.status, 0, e.why, e.requirement)
        self.accept_features(c, features)
        self.write_output(c, NEGOTIATE_OUT, {"features": features, "refused": 0})
        return CallResult(Status.SUCCESS, features)  # HV-NEG-005

    def check_version(self, c: Call, major: int, minor: int) -> None:
        """The major version is this hypervisor's and the minor one not above its own (HV-NEG-001)."""
        cfg = c.st.config
        failing = major != cfg.version_major or minor > cfg.version_minor
        self.verdict(c, "version", failing, f"version {major}.{minor} not implemented")

    def unoffered_features(self, c: Call, features: int) -> int:
        """The feature bits asked for that GET_INFO did not offer (HV-NEG-002)."""
        return features & ~c.st.config.features_offered

    def names_a_kind(self, features: int) -> bool:
        """Whether the features name at least one message kind (HV-NEG-003)."""
        return bool(features & (Feature.MSI | Feature.MSIX | Feature.IMS))

    def missing_features(self, c: Call, features: int) -> int:
        """The required feature bits the guest did not accept (HV-NEG-004)."""
        return c.st.config.features_required & ~features

    def accept_features(self, c: Call, features: int) -> None:
        """Put accepted features in force and the VM in NEGOTIATED (HV-NEG-005), for the life of the
        negotiation (HV-NEG-007)."""
        c.st.features = features
        c.st.move(VmEvent.NEGOTIATE_ACCEPTED)

    def reset(self, c: Call) -> CallResult:
        """RESET: :meth:`reset_vm`, in every state (HV-RESET-001, HV-RESET-003)."""
        return CallResult(Status.SUCCESS, self.reset_vm(c.vm, VmEvent.RESET_CALL))

    def device_query(self, c: Call) -> CallResult:
        """DEVICE_QUERY: :meth:`device_info` into the output block (HV-DEV-004)."""
        dev_id = self.read_input(c, DEVICE_ID, DEVICE_INFO)
        key, dev = self.lookup(c, dev_id)
        self.write_output(c, DEVICE_INFO, self.device_info(c, dict(dev_id), dev, c.st.claims.get(key)))
        return CallResult(Status.SUCCESS)

    def device_info(self, c: Call, dev_id: dict[str, Any], dev: AssignedDevice, claim: Claim | None) -> dict[str, Any]:
        """The fields of device_info: what the device supports as the guest sees it, what is claimed and
        allocated, the quota (HV-DEV-004); ISOLATED only for a device whose messages' source the platform
        validates (HV-DEV-005); SHARED_SOURCE for a function and sub-devices sharing a requester id (HV-SEC-010)."""
        flags = DeviceFlag.RETARGET_IN_PLACE
        if dev.isolated:
            flags |= DeviceFlag.ISOLATED
        if dev.needs_viommu:
            flags |= DeviceFlag.NEEDS_VIOMMU
        if dev.shared_source:
            flags |= DeviceFlag.SHARED_SOURCE  # HV-SEC-010
        if claim is not None:
            flags |= DeviceFlag.CLAIMED
        return {
            "device": dev_id,
            "kinds": device_kinds(dev),
            "claimed_kinds": claim.kinds if claim else 0,
            "flags": flags,
            "msi_max_vectors": dev.msi_max_vectors,
            "msix_table_size": dev.msix_table_size,
            "ims_slots": dev.ims_slots,
            "messages_allocated": claim.vectors if claim else 0,
            "message_quota": c.st.config.max_messages_per_device,
            **self.headroom(c, claim),
        }

    def headroom(self, c: Call, claim: Claim | None) -> dict[str, int]:
        """What the VM and the device can still be allocated (HV-HEADROOM-001): the VM's quota less what it holds,
        at most what is left of its share of the remapping table (emulated vectors and entries kept for freed
        slots take it too, HV-QUOTA-002, HV-QUOTA-004); the device's quota less what it holds, at most the VM's."""
        cfg = c.st.config
        vm_left = cfg.max_messages_per_vm - c.st.vectors
        if cfg.max_remap_entries is not None:
            vm_left = min(vm_left, cfg.max_remap_entries - c.st.vectors)
        free = self.remap.share_free(c.vm.vm_id)
        if free is not None:
            vm_left = min(vm_left, free)
        vm_left = max(0, vm_left)
        dev_left = cfg.max_messages_per_device - (claim.vectors if claim else 0)
        return {"messages_available": max(0, min(dev_left, vm_left)), "vm_messages_available": vm_left}

    def device_claim(self, c: Call) -> CallResult:
        """DEVICE_CLAIM (spec "Devices"): the kinds (:meth:`claim_kinds`), the device not claimed yet and none
        of the kinds enabled through emulation (HV-DEV-007), the claim limit (HV-DEV-008); then emulation of the
        claimed kinds stops (HV-DEV-009)."""
        req = self.read_input(c, CLAIM_IN)
        key, dev = self.lookup(c, req.device)
        kinds = self.claim_kinds(c, dev, int(req.kinds))
        self.verdict(c, "claimed", key in c.st.claims)
        emulated = [k for k in (MsgKind.MSI, MsgKind.MSIX) if kinds & kind_bit(k) and dev.emulated_enabled(k)]
        self.verdict(c, "emulated", emulated)
        self.verdict(c, "claim-limit", len(c.st.claims) >= c.st.config.max_claimed_devices)
        c.st.claims[key] = Claim(dev, kinds, dev.source)
        c.vm.set_emulation(dev, kinds, trapped=False)  # HV-DEV-009
        return CallResult(Status.SUCCESS)

    def claim_kinds(self, c: Call, dev: AssignedDevice, kinds: int) -> int:
        """The kinds a DEVICE_CLAIM asks for: not empty, supported by the device (HV-DEV-006), negotiated
        (HV-NEG-008); the kinds to claim."""
        # dev is None only under a swapped-order fault (checkorder.py): an empty kinds still fails
        self.verdict(c, "kinds", not kinds or (dev is not None and kinds & ~device_kinds(dev)))
        self.verdict(
            c, "kinds-negotiated", any(kinds & kind_bit(k) and not c.st.features & f for k, f in KIND_FEATURE.items())
        )
        return kinds

    def device_release(self, c: Call) -> CallResult:
        """DEVICE_RELEASE: a claimed device (HV-DEV-010) ends its claim through :meth:`end_claim`
        (HV-DEV-011)."""
        dev_id = self.read_input(c, DEVICE_ID)
        key, _dev = self.lookup(c, dev_id)
        self.verdict(c, "not-claimed", key not in c.st.claims)
        return CallResult(Status.SUCCESS, self.end_claim(c.vm, c.st, key, DeviceEvent.RELEASE))

    # -- lifecycle (also driven by the platform: VM reset, FLR, hot-unplug, destroy) -----------------------------

    def end_claim(self, vm: VmPort, st: VmPvmsi, key: DeviceKey, event: DeviceEvent) -> int:
        """End a claim (release, reset, hot-unplug): free the device's messages, revoking their remapping
        (HV-DEV-011, HV-RESET-001, HV-UNPLUG-001), resume emulation; the vectors freed."""
        claim = st.claims.pop(key)
        freed = 0
        for handle in [h for h, m in st.messages.items() if m.device == key]:
            freed += self.drop(st, claim, handle)
        device_event(claim, event)
        if claim.kinds & KindMask.MSIX:
            self.clear_msix_table(claim)  # HV-RELEASE-001, before emulation resumes from it (HV-RELEASE-002)
        vm.set_emulation(claim.device, claim.kinds, trapped=True)
        return freed

    def clear_msix_table(self, claim: Claim) -> None:
        """A claim of MSI-X ends: the table holds the guest's pairs, which name revoked entries, so it goes back to
        its reset state (every entry masked, address and data zero, Enable and Function Mask clear) before
        emulation resumes (HV-RELEASE-001)."""
        claim.device.clear_msix()

    def reset_vm(self, vm: VmPort, event: VmEvent = VmEvent.VM_RESET) -> int:
        """The RESET call or a VM reset (HV-RESET-001..003): every claim ended, the VM back to OPEN; the vectors
        freed."""
        st = self.state_of(vm)
        dev_event = DeviceEvent.RESET_CALL if event is VmEvent.RESET_CALL else DeviceEvent.VM_RESET
        freed = sum(self.end_claim(vm, st, key, dev_event) for key in list(st.claims))
        st.events.clear()  # HV-EVT-007
        st.stale.clear()
        st.features = 0
        st.move(event)
        return freed

    def flr(self, vm: VmPort, key: DeviceKey) -> None:
        """A function-level reset: claim, handles and remapping stay (HV-FLR-001); the hypervisor writes the MSI
        capability of a claimed MSI message again, MSI Enable left clear for the guest (HV-EMU-007)."""
        st = self.state_of(vm)
        claim = st.claims.get(key)
        if claim is not None:
            device_event(claim, DeviceEvent.FLR)
            for msg in st.messages.values():
                if msg.device == key and msg.kind is MsgKind.MSI:
                    self.restore_msi_capability(claim, msg)

    def restore_msi_capability(self, claim: Claim, msg: Message) -> None:
        """After an FLR: the pair and Multiple Message Enable of a claimed MSI message again (HV-EMU-007)."""
        self.write_msi_capability(claim, msg)

    def hot_unplug(self, vm: VmPort, key: DeviceKey) -> int:
        """The device leaves the VM (HV-UNPLUG-001); returns the vectors freed."""
        st = self.state_of(vm)
        freed = 0
        for k in self.function_claims(st, key):
            freed += self.end_claim(vm, st, k, DeviceEvent.HOT_UNPLUG)
            self.device_removed(vm, k)
        return freed

    def device_removed(self, vm: VmPort, key: DeviceKey) -> None:
        """Tell the guest that the claimed device ``key`` is gone, once its claim has ended (HV-UNPLUG-003)."""
        self.queue_event(vm, EventType.DEVICE_REMOVED, device=key)

    @staticmethod
    def function_claims(st: VmPvmsi, key: DeviceKey) -> list[DeviceKey]:
        """The claimed devices of the PCI function ``key`` names: the function and its sub-devices (HV-DEV-012)."""
        segment, bus, devfn, _pasid = key
        return [k for k in st.claims if k[:3] == (segment, bus, devfn)]

    def destroy_vm(self, vm: VmPort) -> int:
        """The VM is destroyed: free everything it holds (HV-SEC-009)."""
        freed = self.reset_vm(vm)
        del self._vms[vm.vm_id]
        return freed

    def forget_vm(self, vm: VmPort) -> None:
        """Drop a VM's state without touching remapping or emulation (the source side of a migration,
        spec "Live migration")."""
        self._vms.pop(vm.vm_id, None)

    def adopt_vm(self, vm: VmPort, st: VmPvmsi) -> None:
        """Install a VM's imported state: the features, claims, handles and pairs as they were (HV-MIG-001), the
        claimed kinds not emulated (HV-MIG-003); the destination side of a migration."""
        self._vms[vm.vm_id] = st

    def vm_states(self) -> dict[int, VmPvmsi]:
        """Per-VM state, for invariant checks."""
        return dict(self._vms)
