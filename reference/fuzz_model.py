"""The fuzzer's oracle: an independent model of a pvmsi 1.0 hypervisor, written from the spec, not from the core.

For every call it works out, before the call, the status and value registers the spec requires (spec "Calling
conventions", "Status codes": the checks in the order HV-CALL-005 gives, then the call's own), what the output
block must hold, and how the VM's pvmsi state changes (spec "Version and feature negotiation", "Device control",
"Allocate, retarget and free", "Batching and partial completion"); after the call :meth:`Model.settle` compares
the answer and the output block with that and moves the model on. What only the hypervisor chooses is learnt
from its answers and then held to the spec: handles (non-zero, never reissued to the VM: HV-SEC-005) and pairs
(distinct for every live message, an MSI block's data aligned: HV-ALLOC-008; a retarget that changes the pair
says REWRITE: HV-RETGT-003). One thing the model cannot know is whether the interrupt-remapping table has room:
an allocation refused with NO_RESOURCES is accepted when the table indeed holds no free block of that size.

The model knows the devices as the guest sees them (the platform's assignment: a function and its sub-devices,
which have IMS only, their own partition of the slots) and the hypervisor's configuration (what GET_INFO must
report); nothing else of the reference.

What one call must do is a :class:`~.fuzz_plan.Plan`; the rules for each entry of a message batch are
:class:`~.fuzz_entries.EntryRules`, which :class:`Model` inherits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..spec.calls import CALLS_BY_FN
from ..spec.codec import DecodeError
from ..spec.constants import (
    DeviceFlag,
    Feature,
    FunctionNumber,
    Limit,
    MsgKind,
    Status,
)
from ..spec.kinds import kind_bit
from ..spec.states import VmState
from ..spec.version import encode_version
from .fuzz_entries import EntryRules
from .fuzz_plan import CODECS, Plan, Refusal, read_output
from .fuzz_state import Claim, Dev, DeviceKey, VmModel

PAGE = int(Limit.PAGE_SIZE)
ALIGN = int(Limit.BLOCK_ALIGN)
KIND_FEATURE = {MsgKind.MSI: Feature.MSI, MsgKind.MSIX: Feature.MSIX, MsgKind.IMS: Feature.IMS}
KINDS_FEATURES = int(Feature.MSI | Feature.MSIX | Feature.IMS)
#: The device flags the model predicts (HV-DEV-005, HV-SEC-010); RETARGET_IN_PLACE is the implementation's choice.
_CHECKED_FLAGS = DeviceFlag.CLAIMED | DeviceFlag.NEEDS_VIOMMU | DeviceFlag.ISOLATED | DeviceFlag.SHARED_SOURCE


class Model(EntryRules):
    """The oracle over every VM of one host."""

    def __init__(
        self, has_free_block: Callable[[int, int], bool], share_of: Callable[[int], int | None] = lambda vm_id: None
    ) -> None:
        self.vms: dict[int, VmModel] = {}
        #: Whether a block of ``count`` entries fits in VM ``vm_id``'s share now (the host's table: HV-SEC-007).
        self.has_free_block = has_free_block
        #: How many remapping entries the host gives a VM (its share, HV-QUOTA-001), None: no share.
        self.share_of = share_of

    # -- before the call ---------------------------------------------------------------------------------------
    def plan(self, vm: VmModel, fn: int, args: tuple[int, ...], read: Callable[[int, int], bytes | None]) -> Plan:
        """The expected outcome of call ``fn`` with ``args``; ``read(gpa, size)`` reads guest RAM (None outside)."""
        call = CALLS_BY_FN.get(fn)
        plan = Plan(vm, call)
        if call is None:
            plan.status = Status.NOT_SUPPORTED  # HV-CALL-001
            return plan
        try:
            in_gpa, out_gpa, a2, a3 = args
            if a2 or a3 or (call.input is None) != (in_gpa == 0) or (call.output is None) != (out_gpa == 0):
                raise Refusal(Status.INVALID_PARAMETER, "HV-CALL-003")
            if vm.state not in call.states:
                raise Refusal(Status.WRONG_STATE, "HV-STATE-002")
            getattr(self, "_" + call.name.lower())(plan, in_gpa, out_gpa, read)
        except Refusal as r:
            plan.status, plan.value, plan.output, plan.batch, plan.apply = r.status, 0, None, None, None
            plan.relations = None
        return plan

    @staticmethod
    def _block(read: Callable[[int, int], bytes | None], gpa: int, size: int) -> bytes:
        """The memory rules for one block (HV-MEM-001..003): its bytes."""
        if gpa % ALIGN or gpa // PAGE != (gpa + size - 1) // PAGE:
            raise Refusal(Status.INVALID_ADDRESS, "HV-MEM-001/002")
        raw = read(gpa, size)
        if raw is None:
            raise Refusal(Status.INVALID_ADDRESS, "HV-MEM-003")
        return raw

    def _blocks(self, read: Callable[[int, int], bytes | None], i: int, isz: int, o: int, osz: int) -> bytes:
        raw = self._block(read, i, isz)
        self._block(read, o, osz)
        if i < o + osz and o < i + isz:
            raise Refusal(Status.INVALID_ADDRESS, "HV-MEM-004")
        return raw

    @staticmethod
    def _decode(name: str, raw: bytes, offset: int = 0) -> Any:
        try:
            return CODECS[name].unpack_record_from(raw, offset)
        except DecodeError:
            raise Refusal(Status.INVALID_PARAMETER, "HV-CONV-001/002") from None

    def _device(self, vm: VmModel, seg: int, bus: int, devfn: int, flags: int, sub_id: int) -> tuple[DeviceKey, Dev]:
        """A device identity (HV-DEV-001..003, HV-NEG-008)."""
        sub = bool(int(flags) & 1)
        if (not sub and sub_id) or sub_id >> 20:
            raise Refusal(Status.INVALID_PARAMETER, "HV-DEV-002")
        if sub and not vm.features & Feature.SUBDEVICE:
            raise Refusal(Status.NOT_PERMITTED, "HV-NEG-008")
        key: DeviceKey = (seg, bus, devfn, sub_id if sub else None)
        dev = vm.devices().get(key)
        if dev is None:
            raise Refusal(Status.UNKNOWN_DEVICE, "HV-DEV-001/003")
        return key, dev

    def _version(self, plan: Plan, i: int, o: int, read: Any) -> None:
        cfg = plan.vm.config
        plan.value = encode_version(cfg.version_major, cfg.version_minor)  # HV-DISC-003

    def vm_quota(self, vm: VmModel) -> int:
        """The quota GET_INFO reports: the configured one, at most the VM's share (HV-QUOTA-001)."""
        share = self.share_of(vm.vm_id)
        return vm.config.max_messages_per_vm if share is None else min(vm.config.max_messages_per_vm, share)

    def _get_info(self, plan: Plan, i: int, o: int, read: Any) -> None:
        self._block(read, o, CODECS["hv_info"].size)
        cfg = plan.vm.config
        info = {
            "version_major": cfg.version_major,
            "version_minor": cfg.version_minor,
            "message_format": int(cfg.message_format),
            "features_offered": cfg.features_offered,
            "features_required": cfg.features_required,
            "max_batch": cfg.max_batch,
            "max_claimed_devices": cfg.max_claimed_devices,
            "max_messages_per_vm": self.vm_quota(plan.vm),
            "max_messages_per_device": cfg.max_messages_per_device,
        }
        plan.output = ("hv_info", info)  # HV-DISC-004

    def _negotiate(self, plan: Plan, i: int, o: int, read: Any) -> None:
        vm, cfg = plan.vm, plan.vm.config
        req = self._decode("negotiate_in", self._blocks(read, i, 16, o, 16))
        if req.version_major != cfg.version_major or req.version_minor > cfg.version_minor:
            raise Refusal(Status.VERSION_MISMATCH, "HV-NEG-001")
        features = int(req.features)
        unoffered, missing = features & ~cfg.features_offered, cfg.features_required & ~features
        if unoffered or not features & KINDS_FEATURES:  # HV-NEG-002, HV-NEG-003
            plan.status, plan.output = (
                Status.INVALID_PARAMETER,
                ("negotiate_out", {"features": 0, "refused": unoffered}),
            )
        elif missing:  # HV-NEG-004: refused visibly, still OPEN
            plan.status, plan.output = Status.FEATURES_REFUSED, ("negotiate_out", {"features": 0, "refused": missing})
        else:  # HV-NEG-005
            plan.value, plan.output = features, ("negotiate_out", {"features": features, "refused": 0})

            def accept() -> None:
                vm.state, vm.features = VmState.NEGOTIATED, features

            plan.apply = accept

    def _reset(self, plan: Plan, i: int, o: int, read: Any) -> None:
        vm = plan.vm
        plan.value = sum(m.count for m in vm.messages.values())  # HV-RESET-001
        plan.apply = vm.reset

    def _device_query(self, plan: Plan, i: int, o: int, read: Any) -> None:
        vm = plan.vm
        d = self._decode("device_id", self._blocks(read, i, 16, o, CODECS["device_info"].size))
        key, dev = self._device(vm, d.segment, d.bus, d.devfn, d.flags, d.subdevice_id)
        claim = vm.claims.get(key)
        flags = DeviceFlag.CLAIMED * (claim is not None) | DeviceFlag.NEEDS_VIOMMU * dev.needs_viommu
        flags |= DeviceFlag.ISOLATED * dev.isolated  # only when the source is validated (HV-DEV-005)
        flags |= DeviceFlag.SHARED_SOURCE * dev.shared_source  # one requester id for all of them (HV-SEC-010)
        info = {
            "device_segment": d.segment,
            "device_bus": d.bus,
            "device_devfn": d.devfn,
            "device_flags": int(d.flags),
            "device_subdevice_id": d.subdevice_id,
            "kinds": dev.kinds,
            "claimed_kinds": claim.kinds if claim else 0,
            "msi_max_vectors": dev.msi,
            "msix_table_size": dev.msix,
            "ims_slots": dev.ims,
            "messages_allocated": claim.vectors if claim else 0,
            "message_quota": vm.config.max_messages_per_device,
            "flags&": (int(flags), int(_CHECKED_FLAGS)),
        }
        plan.output = ("device_info", info)  # HV-DEV-004
        plan.relations = lambda got: self._headroom(vm, claim.vectors if claim else 0, got)

    def _headroom(self, vm: VmModel, held: int, got: Any) -> list[str]:
        """What the model can hold the headroom to without knowing the table's free entries (HV-HEADROOM-001): the
        VM's at most its quota and its share less what it holds, the device's its own quota less what it holds, at
        most the VM's."""
        cfg, problems = vm.config, []
        vm_left = cfg.max_messages_per_vm - vm.vectors
        share = self.share_of(vm.vm_id)
        for bound in (share, cfg.max_remap_entries):
            if bound is not None:
                vm_left = min(vm_left, bound - vm.vectors)
        if got.vm_messages_available > max(0, vm_left):
            problems.append(f"DEVICE_QUERY: vm_messages_available {got.vm_messages_available} > {max(0, vm_left)}")
        want = max(0, min(cfg.max_messages_per_device - held, got.vm_messages_available))
        if got.messages_available != want:
            problems.append(f"DEVICE_QUERY: messages_available {got.messages_available}, the spec requires {want}")
        return problems

    def _device_claim(self, plan: Plan, i: int, o: int, read: Any) -> None:
        vm = plan.vm
        r = self._decode("claim_in", self._block(read, i, 24))
        key, dev = self._device(
            vm, r.device_segment, r.device_bus, r.device_devfn, r.device_flags, r.device_subdevice_id
        )
        kinds = int(r.kinds)
        if not kinds or kinds & ~dev.kinds:
            raise Refusal(Status.INVALID_PARAMETER, "HV-DEV-006")
        if any(kinds & kind_bit(k) and not vm.features & f for k, f in KIND_FEATURE.items()):
            raise Refusal(Status.NOT_PERMITTED, "HV-NEG-008")
        if key in vm.claims or any(kinds & kind_bit(k) and vm.emulated(key, k) for k in (MsgKind.MSI, MsgKind.MSIX)):
            raise Refusal(Status.WRONG_STATE, "HV-DEV-007")
        if len(vm.claims) >= vm.config.max_claimed_devices:
            raise Refusal(Status.NO_RESOURCES, "HV-DEV-008")

        def claim() -> None:
            vm.claims[key] = Claim(kinds)

        plan.apply = claim

    def _device_release(self, plan: Plan, i: int, o: int, read: Any) -> None:
        vm = plan.vm
        d = self._decode("device_id", self._block(read, i, 16))
        key, _dev = self._device(vm, d.segment, d.bus, d.devfn, d.flags, d.subdevice_id)
        if key not in vm.claims:
            raise Refusal(Status.WRONG_STATE, "HV-DEV-010")
        plan.value = sum(m.count for m in vm.messages.values() if m.device == key)  # HV-DEV-011

        def release() -> None:
            vm.end_claim(key)

        plan.apply = release

    def _event_config(self, plan: Plan, i: int, o: int, read: Any) -> None:
        vm = plan.vm
        r = self._decode("event_config_in", self._block(read, i, 16))
        target: tuple[int, int] | None = None
        if int(r.flags) & 1:
            self._target(vm, r.vcpu, r.vector, 1, 0)  # HV-EVT-001 as HV-ALLOC-006
            target = (r.vcpu, r.vector)
        elif r.vcpu or r.vector:
            raise Refusal(Status.INVALID_PARAMETER, "HV-EVT-001")

        def configure() -> None:
            vm.event_target = target

        plan.apply = configure

    def _event_fetch(self, plan: Plan, i: int, o: int, read: Any) -> None:
        vm = plan.vm
        self._block(read, o, PAGE)
        plan.value = len(vm.events)  # HV-EVT-004: every pending event, nothing removed
        plan.output = ("event_header", {"count": len(vm.events), "next_seq": vm.event_seq})

    def _event_ack(self, plan: Plan, i: int, o: int, read: Any) -> None:
        vm = plan.vm
        r = self._decode("event_ack_in", self._block(read, i, 16))
        if r.seq >= vm.event_seq:
            raise Refusal(Status.INVALID_PARAMETER, "HV-EVT-006")
        left = [e for e in vm.events if e[0] > r.seq]
        plan.value = len(left)

        def acknowledge() -> None:
            vm.events = left

        plan.apply = acknowledge

    def _msg_alloc(self, plan: Plan, i: int, o: int, read: Any) -> None:
        self._batch(plan, i, o, read)

    _msg_activate = _msg_free = _msg_deactivate = _msg_alloc

    def _batch(self, plan: Plan, i: int, o: int, read: Any) -> None:
        """The header (HV-MEM-*, HV-CONV-*, HV-BATCH-001), the device, its claim (HV-ALLOC-001), both whole blocks
        (HV-CALL-005); then the entries from start, to the end or the yield point (HV-BATCH-005)."""
        vm, call = plan.vm, plan.call
        assert call is not None
        assert call.input_entry is not None
        assert call.output_entry is not None
        h = self._decode("batch_in", self._block(read, i, 32))
        if not 1 <= h.count <= vm.config.max_batch or h.start >= h.count:
            raise Refusal(Status.INVALID_PARAMETER, "HV-BATCH-001")
        key, _dev = self._device(
            vm, h.device_segment, h.device_bus, h.device_devfn, h.device_flags, h.device_subdevice_id
        )
        if key not in vm.claims:
            raise Refusal(Status.WRONG_STATE, "HV-ALLOC-001")
        esize, rsize = CODECS[call.input_entry].size, CODECS[call.output_entry].size
        raw = self._blocks(read, i, 32 + h.count * esize, o, 16 + h.count * rsize)
        yield_after = vm.config.yield_after
        stop = h.count if yield_after is None else min(h.count, h.start + yield_after)
        entries = []
        for n in range(h.start, stop):
            try:
                entries.append(CODECS[call.input_entry].unpack_record_from(raw, 32 + n * esize))
            except DecodeError:
                entries.append(None)
                break
        plan.batch = (h, entries, stop)
        plan.status = Status.SUCCESS  # settle walks the entries

    # -- after the call -----------------------------------------------------------------------------------------
    def settle(self, plan: Plan, status: int, value: int, out: Callable[[int, int], bytes | None], o: int) -> list[str]:
        """Compare the call's answer with the plan and apply it; the problems (empty when it conforms)."""
        if plan.batch is not None:
            return self._settle_batch(plan, status, value, out, o)
        name = plan.call.name if plan.call else "undefined call"
        problems = []
        if (status, value) != (plan.status, plan.value):
            problems.append(
                f"{name}: status/value {status}/{value:#x}, the spec requires {plan.status}/{plan.value:#x}"
            )
            return problems
        if plan.output is not None:
            fmt, want = plan.output
            got = read_output(fmt, out(o, CODECS[fmt].size))
            for k, v in want.items():
                if "&" in k:
                    real, mask = v
                    if got is None or int(got.flags) & mask != real:
                        problems.append(
                            f"{name}: output flags {got and int(got.flags):#x}, expected {real:#x} in {mask:#x}"
                        )
                elif got is None or int(getattr(got, k)) != v:
                    problems.append(f"{name}: output {k} = {got and getattr(got, k)}, the spec requires {v}")
            if not problems and got is not None and plan.relations is not None:
                problems += plan.relations(got)
        if not problems and plan.apply is not None:
            plan.apply()
        return problems

    def _settle_batch(self, plan: Plan, status: int, value: int, out: Any, o: int) -> list[str]:
        vm, call = plan.vm, plan.call
        assert plan.batch is not None
        assert call is not None
        assert call.output_entry is not None
        h, entries, _stop = plan.batch
        key = (
            h.device_segment,
            h.device_bus,
            h.device_devfn,
            h.device_subdevice_id if int(h.device_flags) & 1 else None,
        )
        claim = vm.claims[key]
        rfmt = CODECS[call.output_entry]
        bo = read_output("batch_out", out(o, 16))
        if bo is None:
            return [f"{call.name}: batch_out unreadable or not decodable"]
        problems: list[str] = []
        n = h.start
        error: tuple[int, str] | None = None
        for entry in entries:
            result = read_output(call.output_entry, out(o + 16 + n * rfmt.size, rfmt.size))
            if entry is None:
                error = (Status.INVALID_PARAMETER, "HV-CONV-001/002")
            else:
                try:
                    step = getattr(self, "_entry_" + call.name.lower())(vm, key, claim, entry)
                except Refusal as r:
                    error = (r.status, r.requirement)
                else:
                    if call.fn is FunctionNumber.MSG_ALLOC and (status, value, bo.next_index) == (
                        Status.NO_RESOURCES,
                        n,
                        n,
                    ):
                        # Refused for a full remapping table (HV-SEC-007): only if the table holds no free block of
                        # that size now, as it did when the entry failed (nothing is freed after a failure).
                        if self.has_free_block(entry.vector_count, vm.vm_id):
                            problems.append(f"{call.name}: entry {n} refused NO_RESOURCES, the table had room")
                        error = (Status.NO_RESOURCES, "HV-SEC-007")
                    else:
                        problems += step(result, n)
            if error is not None:
                break
            n += 1
        want_status = error[0] if error else (Status.INCOMPLETE if n < h.count else Status.SUCCESS)
        if (status, value) != (want_status, n) or (bo.next_index, bo.completed, bo.status) != (n, n - h.start, status):
            problems.insert(
                0,
                f"{call.name}: status/value {status}/{value}, batch_out {bo.next_index}/{bo.completed}/{bo.status}; "
                f"the spec requires {want_status} at entry {n} (start {h.start}, count {h.count}, "
                f"{error[1] if error else 'no failure'})",
            )
        elif error is not None and read_output(
            call.output_entry, out(o + 16 + n * rfmt.size, rfmt.size)
        ) != rfmt.record_type(status=error[0]):
            problems.append(f"{call.name}: the failing entry's result is not its status alone")
        return problems
