"""The reference hypervisor core: one pvmsi hypercall in, one result out (sans-I/O, as h11 is for HTTP).

:meth:`HypervisorCore.hypercall` takes the function number, the four argument registers and the VM (its
memory, devices and vCPUs through :mod:`.ports`) and returns the status and value registers.  It enforces every
hypervisor requirement of the spec; each check cites the requirement id it implements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...spec.calls import CALLS_BY_FN, CallDef
from ...spec.codec import DecodeError, decode, encode
from ...spec.constants import DeviceFlag, DeviceIdFlag, Feature, FunctionNumber, KindMask, MsgKind, Status
from ...spec.formats import CLAIM_IN, DEVICE_ID, DEVICE_INFO, HV_INFO, NEGOTIATE_IN, NEGOTIATE_OUT
from ...spec.layout import layout_of
from ...spec.states import DeviceEvent, VmEvent, VmState
from ...spec.version import encode_version
from .blocks import MemoryRules
from .call import Call, CallResult
from .config import HypervisorConfig
from .errors import CallError
from .messages import MessageOps
from .ports import AssignedDevice, RemapPort, VmPort
from .vmstate import Claim, DeviceKey, HandleSource, VmPvmsi, device_event

KIND_FEATURE = {MsgKind.MSI: Feature.MSI, MsgKind.MSIX: Feature.MSIX, MsgKind.IMS: Feature.IMS}
PASID_MASK = (1 << 20) - 1
_SUBDEVICE_ID = int(DeviceIdFlag.SUBDEVICE)
_F_SUBDEVICE = int(Feature.SUBDEVICE)
_INVALID_PARAMETER = Status.INVALID_PARAMETER
_new_call = tuple.__new__


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


class HypervisorCore:
    """pvmsi for every VM of one hypervisor."""

    def __init__(self, config: HypervisorConfig, remap: RemapPort) -> None:
        self.config = config
        self.remap = remap
        self._vms: dict[int, VmPvmsi] = {}
        self.rules = MemoryRules()
        self.messages = MessageOps(self)
        self._handlers: dict[FunctionNumber, Callable[[Call], CallResult]] = {
            FunctionNumber.VERSION: self._version,
            FunctionNumber.GET_INFO: self._get_info,
            FunctionNumber.NEGOTIATE: self._negotiate,
            FunctionNumber.RESET: self._reset,
            FunctionNumber.DEVICE_QUERY: self._device_query,
            FunctionNumber.DEVICE_CLAIM: self._device_claim,
            FunctionNumber.DEVICE_RELEASE: self._device_release,
            FunctionNumber.MSG_ALLOC: self.messages.alloc,
            FunctionNumber.MSG_RETARGET: self.messages.retarget,
            FunctionNumber.MSG_FREE: self.messages.free,
        }
        self._dispatch: dict[int, tuple[CallDef, Callable[[Call], CallResult]]] = {
            fn: (call, self._handlers[call.fn]) for fn, call in CALLS_BY_FN.items()
        }

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

    # -- the one entry point --------------------------------------------------------------------------------

    def hypercall(self, vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        """Execute one pvmsi call (HV-CALL-005 gives the order of the checks)."""
        entry = self._dispatch.get(fn)
        if entry is None:
            return CallResult(Status.NOT_SUPPORTED)  # HV-CALL-001
        call, handler = entry
        # The argument registers (HV-CALL-003), then the VM state, then the call itself.
        if len(args) != 4:
            return CallResult(_INVALID_PARAMETER, 0, "four argument registers expected")
        in_gpa, out_gpa, a2, a3 = args
        if a2 or a3:
            return CallResult(_INVALID_PARAMETER, 0, "reserved argument register is not zero (HV-CALL-003)")
        if (call.input is None) != (in_gpa == 0):
            return CallResult(_INVALID_PARAMETER, 0, "input block address register is wrong (HV-CALL-003)")
        if (call.output is None) != (out_gpa == 0):
            return CallResult(_INVALID_PARAMETER, 0, "output block address register is wrong (HV-CALL-003)")
        st = self._vms.get(vm.vm_id) or self.state_of(vm)
        try:
            self._check_state(call, st)
            return handler(_new_call(Call, (vm, st, vcpu, args)))  # Call(vm, st, vcpu, args), without a frame
        except CallError as e:
            return CallResult(e.status, 0, e.why)  # HV-CALL-004: value zero on failure

    @staticmethod
    def _check_state(call: CallDef, st: VmPvmsi) -> None:
        """The call's valid states come from the spec's call table (HV-STATE-001, HV-STATE-002, HV-NEG-006)."""
        if st.state not in call.states:
            raise CallError(Status.WRONG_STATE, f"{call.name} is not valid in {st.state.value} (HV-STATE-001)")

    def read_input(self, c: Call, fmt: Any, out_fmt: Any | None = None) -> Any:
        """Check the input (and output) block addresses, read the input once and decode it."""
        size = size_of(fmt)
        if out_fmt is None:
            self.rules.block(c.vm.memory, c.in_gpa, size, "input")
        else:
            self.rules.blocks(c.vm.memory, c.in_gpa, size, c.out_gpa, size_of(out_fmt))
        raw = c.vm.memory.read(c.in_gpa, size)  # HV-MEM-005: the only read of this block
        try:
            return decode(fmt, raw)
        except DecodeError as e:
            raise CallError(Status.INVALID_PARAMETER, str(e)) from None  # HV-CONV-001, HV-CONV-002

    # -- devices -------------------------------------------------------------------------------------------------

    def lookup(self, c: Call, dev_id: Any) -> tuple[DeviceKey, AssignedDevice]:
        """Resolve a decoded device_id the guest gave (HV-DEV-001..003, HV-NEG-008)."""
        return self.lookup_fields(c, dev_id.segment, dev_id.bus, dev_id.devfn, int(dev_id.flags), dev_id.subdevice_id)

    def lookup_fields(
        self, c: Call, segment: int, bus: int, devfn: int, flags: int, subdevice_id: int
    ) -> tuple[DeviceKey, AssignedDevice]:
        """Resolve a device identity given as its fields (HV-DEV-001..003, HV-NEG-008)."""
        sub = bool(flags & _SUBDEVICE_ID)
        if not sub and subdevice_id:
            raise CallError(Status.INVALID_PARAMETER, "subdevice_id without PVMSI_DEVID_SUBDEVICE (HV-DEV-002)")
        if subdevice_id & ~PASID_MASK:
            raise CallError(Status.INVALID_PARAMETER, "subdevice_id has bits above 19 (HV-DEV-002)")
        if sub and not c.st.features & _F_SUBDEVICE:
            raise CallError(Status.NOT_PERMITTED, "sub-device id without feature SUBDEVICE (HV-NEG-008)")
        pasid = subdevice_id if sub else None
        dev = c.vm.device(segment, bus, devfn, pasid)
        if dev is None:
            raise CallError(Status.UNKNOWN_DEVICE, "no such device assigned to this VM (HV-DEV-001, HV-DEV-003)")
        return (segment, bus, devfn, pasid), dev

    # -- calls ---------------------------------------------------------------------------------------------------

    def _version(self, c: Call) -> CallResult:
        cfg = c.st.config
        return CallResult(Status.SUCCESS, encode_version(cfg.version_major, cfg.version_minor))

    def _get_info(self, c: Call) -> CallResult:
        cfg = c.st.config
        size = size_of(HV_INFO)
        self.rules.block(c.vm.memory, c.out_gpa, size, "output")
        c.vm.memory.write(
            c.out_gpa,
            encode(
                HV_INFO,
                {
                    "version_major": cfg.version_major,
                    "version_minor": cfg.version_minor,
                    "message_format": cfg.message_format,
                    "features_offered": cfg.features_offered,
                    "features_required": cfg.features_required,
                    "max_batch": cfg.max_batch,
                    "max_claimed_devices": cfg.max_claimed_devices,
                    "max_messages_per_vm": cfg.max_messages_per_vm,
                    "max_messages_per_device": cfg.max_messages_per_device,
                },
            ),
        )
        return CallResult(Status.SUCCESS)

    def _negotiate(self, c: Call) -> CallResult:
        req = self.read_input(c, NEGOTIATE_IN, NEGOTIATE_OUT)
        cfg = c.st.config

        def answer(status: Status, features: int, refused: int) -> CallResult:
            c.vm.memory.write(c.out_gpa, encode(NEGOTIATE_OUT, {"features": features, "refused": refused}))
            return CallResult(status, features)

        if req.version_major != cfg.version_major or req.version_minor > cfg.version_minor:
            raise CallError(Status.VERSION_MISMATCH, "version not implemented (HV-NEG-001)")
        unoffered = req.features & ~cfg.features_offered
        if unoffered:
            return answer(Status.INVALID_PARAMETER, 0, unoffered)  # HV-NEG-002
        if not req.features & (Feature.MSI | Feature.MSIX | Feature.IMS):
            return answer(Status.INVALID_PARAMETER, 0, 0)  # HV-NEG-003
        missing = cfg.features_required & ~req.features
        if missing:
            c.st.move(VmEvent.NEGOTIATE_REFUSED)
            return answer(Status.FEATURES_REFUSED, 0, missing)  # HV-NEG-004
        c.st.features = req.features
        c.st.move(VmEvent.NEGOTIATE_ACCEPTED)  # HV-NEG-005
        return answer(Status.SUCCESS, req.features, 0)

    def _reset(self, c: Call) -> CallResult:
        return CallResult(Status.SUCCESS, self.reset_vm(c.vm, VmEvent.RESET_CALL))

    def _device_query(self, c: Call) -> CallResult:
        dev_id = self.read_input(c, DEVICE_ID, DEVICE_INFO)
        key, dev = self.lookup(c, dev_id)
        claim = c.st.claims.get(key)
        flags = DeviceFlag.RETARGET_IN_PLACE
        if dev.isolated:
            flags |= DeviceFlag.ISOLATED  # HV-DEV-005
        if dev.needs_viommu:
            flags |= DeviceFlag.NEEDS_VIOMMU
        if claim is not None:
            flags |= DeviceFlag.CLAIMED
        info = {
            "device": dict(dev_id),
            "kinds": device_kinds(dev),
            "claimed_kinds": claim.kinds if claim else 0,
            "flags": flags,
            "msi_max_vectors": dev.msi_max_vectors,
            "msix_table_size": dev.msix_table_size,
            "ims_slots": dev.ims_slots,
            "messages_allocated": claim.vectors if claim else 0,
            "message_quota": c.st.config.max_messages_per_device,
        }
        c.vm.memory.write(c.out_gpa, encode(DEVICE_INFO, info))  # HV-DEV-004
        return CallResult(Status.SUCCESS)

    def _device_claim(self, c: Call) -> CallResult:
        req = self.read_input(c, CLAIM_IN)
        key, dev = self.lookup(c, req.device)
        kinds = int(req.kinds)
        if not kinds or kinds & ~device_kinds(dev):
            raise CallError(Status.INVALID_PARAMETER, "kinds empty or not supported by the device (HV-DEV-006)")
        for kind, feature in KIND_FEATURE.items():
            if kinds & (1 << kind) and not c.st.features & feature:
                raise CallError(Status.NOT_PERMITTED, f"kind {kind.name} not negotiated (HV-NEG-008)")
        if key in c.st.claims:
            raise CallError(Status.WRONG_STATE, "device already claimed (HV-DEV-007)")
        for kind in (MsgKind.MSI, MsgKind.MSIX):
            if kinds & (1 << kind) and dev.emulated_enabled(kind):
                raise CallError(Status.WRONG_STATE, f"{kind.name} enabled through emulation (HV-DEV-007)")
        if len(c.st.claims) >= c.st.config.max_claimed_devices:
            raise CallError(Status.NO_RESOURCES, "max_claimed_devices reached (HV-DEV-008)")
        claim = Claim(dev, kinds, dev.source)
        c.st.claims[key] = claim
        c.vm.set_emulation(dev, kinds, trapped=False)  # HV-DEV-009
        return CallResult(Status.SUCCESS)

    def _device_release(self, c: Call) -> CallResult:
        dev_id = self.read_input(c, DEVICE_ID)
        key, _dev = self.lookup(c, dev_id)
        claim = c.st.claims.get(key)
        if claim is None:
            raise CallError(Status.WRONG_STATE, "device not claimed (HV-DEV-010)")
        freed = self.end_claim(c.vm, c.st, key, DeviceEvent.RELEASE)  # HV-DEV-011
        return CallResult(Status.SUCCESS, freed)

    # -- lifecycle (also driven by the platform: VM reset, FLR, hot-unplug, destroy) -----------------------------

    def end_claim(self, vm: VmPort, st: VmPvmsi, key: DeviceKey, event: DeviceEvent) -> int:
        """Free a claimed device's messages, revoke remapping, resume emulation; the vectors freed."""
        claim = st.claims.pop(key)
        freed = 0
        for handle in [h for h, m in st.messages.items() if m.device == key]:
            freed += self.messages.drop(st, claim, handle)
        device_event(claim, event)
        vm.set_emulation(claim.device, claim.kinds, trapped=True)
        return freed

    def reset_vm(self, vm: VmPort, event: VmEvent = VmEvent.VM_RESET) -> int:
        """RESET call or VM reset (HV-RESET-001..003): everything freed, VM back to OPEN."""
        st = self.state_of(vm)
        dev_event = DeviceEvent.RESET_CALL if event is VmEvent.RESET_CALL else DeviceEvent.VM_RESET
        freed = sum(self.end_claim(vm, st, key, dev_event) for key in list(st.claims))
        st.features = 0
        st.move(event)
        return freed

    def flr(self, vm: VmPort, key: DeviceKey) -> None:
        """A function-level reset: claim, handles and remapping stay (HV-FLR-001)."""
        claim = self.state_of(vm).claims.get(key)
        if claim is not None:
            device_event(claim, DeviceEvent.FLR)

    def hot_unplug(self, vm: VmPort, key: DeviceKey) -> int:
        """The device leaves the VM (HV-UNPLUG-001); returns the vectors freed."""
        st = self.state_of(vm)
        freed = 0
        for k in [k for k in st.claims if k[:3] == key[:3]]:
            freed += self.end_claim(vm, st, k, DeviceEvent.HOT_UNPLUG)
        return freed

    def destroy_vm(self, vm: VmPort) -> int:
        """Free everything a VM holds (HV-SEC-009)."""
        freed = self.reset_vm(vm)
        del self._vms[vm.vm_id]
        return freed

    def forget_vm(self, vm: VmPort) -> None:
        """Drop a VM's state without touching remapping or emulation (the source side of a migration)."""
        self._vms.pop(vm.vm_id, None)

    def adopt_vm(self, vm: VmPort, st: VmPvmsi) -> None:
        """Install a VM's imported state (the destination side of a migration)."""
        self._vms[vm.vm_id] = st

    def vm_states(self) -> dict[int, VmPvmsi]:
        """Per-VM state, for invariant checks."""
        return dict(self._vms)
