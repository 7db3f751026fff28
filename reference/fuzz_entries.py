"""The fuzzer's model (:mod:`.fuzz_model`) of one entry of a message batch (spec "Allocate, retarget and free"):
the checks made before the hypervisor answers (HV-ALLOC-*, HV-ACT-*, HV-MSI-002, HV-SEC-006/007, HV-NEG-008) and,
once it has, the check of the entry's result and the change it makes to the VM's model (HV-SEC-005,
HV-ALLOC-008, HV-RETGT-003)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..spec.constants import ActivateEntryFlag, ActivateFlag, AllocFlag, Feature, MsgKind, Status
from ..spec.kinds import kind_bit
from .fuzz_plan import Refusal
from .fuzz_state import Claim, DeviceKey, Msg, VmModel


class EntryRules:
    """Per entry of MSG_ALLOC, MSG_ACTIVATE, MSG_DEACTIVATE and MSG_FREE (``_entry_<call>``): refuse it as the spec
    requires, or return the check of its result, which also applies it."""

    #: Every VM of the host (a pair handed out must be no other live message's).
    vms: dict[int, VmModel]

    def _target(self, vm: VmModel, vcpu: int, vector: int, count: int, flags: int) -> bool:
        """vCPU and vectors (HV-ALLOC-006), the POSTED flag (HV-NEG-008): whether it is posted."""
        if vcpu >= vm.vcpus or vector < 32 or vector + count - 1 > 255:
            raise Refusal(Status.INVALID_PARAMETER, "HV-ALLOC-006")
        posted = bool(int(flags) & 1)
        if posted and not vm.features & Feature.POSTED:
            raise Refusal(Status.NOT_PERMITTED, "HV-NEG-008")
        return posted

    def _entry_msg_alloc(self, vm: VmModel, key: DeviceKey, claim: Claim, e: Any) -> Callable[[Any, int], list[str]]:
        kind, n, slot = int(e.kind), e.vector_count, e.slot
        if not claim.kinds & kind_bit(kind):
            raise Refusal(Status.NOT_PERMITTED, "HV-ALLOC-002")
        dev = vm.devices()[key]
        if kind == MsgKind.MSI:
            if n < 1 or n & (n - 1) or n > dev.msi or slot:
                raise Refusal(Status.INVALID_PARAMETER, "HV-ALLOC-003/004")
        elif n != 1 or (kind == MsgKind.MSIX and slot >= dev.limit(kind)):  # an IMS tag is opaque
            raise Refusal(Status.INVALID_PARAMETER, "HV-ALLOC-003/004")
        if (kind, slot) in claim.slots:
            raise Refusal(Status.WRONG_STATE, "HV-ALLOC-005")
        activate = bool(int(e.alloc_flags) & AllocFlag.ACTIVATE)
        if not activate and (e.vcpu or e.vector or int(e.flags)):
            raise Refusal(Status.INVALID_PARAMETER, "HV-ACT-002")
        if int(e.alloc_flags) & AllocFlag.LOCALITY_HINT:
            if e.hint_vcpu >= vm.vcpus:
                raise Refusal(Status.INVALID_PARAMETER, "HV-ACT-002")
        elif e.hint_vcpu:
            raise Refusal(Status.INVALID_PARAMETER, "HV-ACT-002")
        posted = self._target(vm, e.vcpu, e.vector, n, e.flags) if activate else False
        cfg = vm.config
        if claim.vectors + n > cfg.max_messages_per_device or vm.vectors + n > cfg.max_messages_per_vm:
            raise Refusal(Status.NO_RESOURCES, "HV-SEC-006")
        if cfg.max_remap_entries is not None and vm.vectors + n > cfg.max_remap_entries:
            raise Refusal(Status.NO_RESOURCES, "HV-SEC-007")

        def check(result: Any, index: int) -> list[str]:
            problems = []
            if result is None or result.status or not result.handle:
                return [f"MSG_ALLOC: entry {index} result {result}"]
            if result.handle in vm.issued:
                problems.append(f"MSG_ALLOC: handle {result.handle:#x} issued to the VM before (HV-SEC-005)")
            if result.data & (n - 1):
                problems.append(f"MSG_ALLOC: MSI block of {n} with data {result.data:#x} (HV-ALLOC-008)")
            pair = (result.address, result.data)
            if not activate:
                if pair != (0, 0):
                    problems.append(f"MSG_ALLOC: a reservation returned the pair {pair} (HV-ACT-001)")
            elif any((m.address, m.data) == pair for mv in self.vms.values() for m in mv.messages.values()):
                problems.append(f"MSG_ALLOC: pair {pair} is another live message's")
            vm.issued.add(result.handle)
            targets: list[tuple[int, int, bool] | None] = (
                [(e.vcpu, e.vector + i, posted) for i in range(n)] if activate else [None] * n
            )
            vm.messages[result.handle] = Msg(key, kind, slot, n, e.vcpu, e.vector, posted, *pair, targets)
            claim.slots.add((kind, slot))
            claim.vectors += n
            vm.vectors += n
            return problems

        return check

    def _owned(self, vm: VmModel, key: DeviceKey, handle: int) -> Msg:
        m = vm.messages.get(handle)
        if m is None or m.device != key:
            raise Refusal(Status.UNKNOWN_HANDLE, "HV-SEC-003/HV-RETGT-001/HV-FREE-001")
        return m

    def _entry_msg_activate(self, vm: VmModel, key: DeviceKey, claim: Claim, e: Any) -> Callable[[Any, int], list[str]]:
        m = self._owned(vm, key, e.handle)
        block = bool(int(e.entry_flags) & ActivateEntryFlag.BLOCK)
        whole = block or m.count == 1
        if e.index >= m.count or (block and e.index):
            raise Refusal(Status.INVALID_PARAMETER, "HV-ACT-007")
        posted = self._target(vm, e.vcpu, e.vector, m.count if whole else 1, e.flags)
        active = any(t is not None for t in m.targets)
        leaves = not active or (e.vcpu, e.vector) != (m.vcpu, m.vector + e.index)
        if not whole and not vm.config.per_vector_targets and leaves:
            raise Refusal(Status.PER_VECTOR_REFUSED, "HV-MSI-002")

        def check(result: Any, index: int) -> list[str]:
            if result is None or result.status:
                return [f"MSG_ACTIVATE: entry {index} result {result}"]
            changed = (result.address, result.data) != (m.address, m.data)
            problems = []
            if (changed or not active) != bool(int(result.flags) & ActivateFlag.REWRITE):
                problems.append(f"MSG_ACTIVATE: pair changed {changed}, REWRITE {int(result.flags)} (HV-RETGT-003)")
            if whole:
                m.vcpu, m.vector, m.posted = e.vcpu, e.vector, posted
                m.targets = [(e.vcpu, e.vector + i, posted) for i in range(m.count)]
            else:
                m.targets[e.index] = (e.vcpu, e.vector, posted)
            m.address, m.data = result.address, result.data
            return problems

        return check

    def _entry_msg_deactivate(
        self, vm: VmModel, key: DeviceKey, claim: Claim, e: Any
    ) -> Callable[[Any, int], list[str]]:
        m = self._owned(vm, key, e.handle)
        block = bool(int(e.entry_flags) & ActivateEntryFlag.BLOCK)
        if e.index >= m.count or (block and e.index):
            raise Refusal(Status.INVALID_PARAMETER, "HV-ACT-007")
        if block or m.count == 1:
            indexes = [i for i, t in enumerate(m.targets) if t is not None]
        else:
            if not vm.config.per_vector_targets:
                raise Refusal(Status.PER_VECTOR_REFUSED, "HV-MSI-002")
            indexes = [e.index] if m.targets[e.index] is not None else []
        if not indexes:
            raise Refusal(Status.NOT_ACTIVE, "HV-ACT-005")

        def check(result: Any, index: int) -> list[str]:
            for i in indexes:
                m.targets[i] = None
            return (
                [] if result is not None and not result.status else [f"MSG_DEACTIVATE: entry {index} result {result}"]
            )

        return check

    def _entry_msg_free(self, vm: VmModel, key: DeviceKey, claim: Claim, e: Any) -> Callable[[Any, int], list[str]]:
        self._owned(vm, key, e.handle)

        def check(result: Any, index: int) -> list[str]:
            vm.drop(e.handle)
            return [] if result is not None and not result.status else [f"MSG_FREE: entry {index} result {result}"]

        return check
