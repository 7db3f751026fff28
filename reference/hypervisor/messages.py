"""MSG_ALLOC, MSG_ACTIVATE, MSG_DEACTIVATE and MSG_FREE, and the batch machinery they share (spec "Batching and
partial completion", "Reserve, activate, deactivate and free").

:class:`MessageCalls` is a part of :class:`~.core.HypervisorCore`.  Each step is a public method a subclass may
override: the batch header (:meth:`~MessageCalls.read_header`, :meth:`~MessageCalls.check_header`), the one read
of the entries (:meth:`~MessageCalls.read_entries`), the per-entry operations (:meth:`~MessageCalls.alloc_entry`,
:meth:`~MessageCalls.activate_entry`, :meth:`~MessageCalls.deactivate_entry`, :meth:`~MessageCalls.free_entry`,
each a named record in and one out,
:mod:`pvmsi.spec.records`), the checks they share (:meth:`~MessageCalls.check_target`,
:meth:`~MessageCalls.owned`, :meth:`~MessageCalls.check_quota`), the remapping policy
(:meth:`~MessageCalls.alloc_remapping`, :meth:`~MessageCalls.retarget_remapping`,
:meth:`~MessageCalls.release_remapping`, :meth:`~MessageCalls.message_pair`), handles
(:meth:`~MessageCalls.issue_handle`) and the output (:meth:`~MessageCalls.finish_batch`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ...spec.calls import CALLS_BY_FN, CallDef
from ...spec.checks import CHECKS
from ...spec.codec import DecodeError
from ...spec.constants import (
    ActivateEntryFlag,
    ActivateFlag,
    AllocFlag,
    DeliveryFlag,
    Feature,
    FunctionNumber,
    MsgKind,
    Status,
)
from ...spec.fastcodec import FastFormat, fast
from ...spec.kinds import kind_bit
from ...spec.records import (
    ActivateEntry,
    ActivateResult,
    AllocEntry,
    AllocResult,
    BatchIn,
    DeactivateEntry,
    DeactivateResult,
    FreeEntry,
    FreeResult,
)
from .blocks import MemoryRules
from .call import Call, CallResult
from .errors import CallError, decode_failure
from .ports import AssignedDevice, RemapPort
from .vmstate import Claim, DeviceKey, Message, VmPvmsi

# The hot path uses the codec derived from the construct definitions (spec/fastcodec.py; tests/test_fastcodec.py
# proves it equal to the construct codec): one struct unpack/pack plus the generated field checks per block.
BATCH_IN = fast("batch_in")
BATCH_OUT = fast("batch_out")
ALLOC_RESULT, ACTIVATE_RESULT, FREE_RESULT = fast("alloc_result"), fast("activate_result"), fast("free_result")
DEACTIVATE_RESULT = fast("deactivate_result")
#: MsgKind by wire value (a table: calling the enum class is slow on the hot path).
KIND_BY_VALUE: dict[int, MsgKind] = {int(k): k for k in MsgKind}

#: The steps of every batch call's check order that apply the memory rules to the whole blocks, in order: those
#: after the claim and before the first entry (spec/checks.py, HV-MEM-007).
_BATCH_KEYS = [chk.key for chk in CHECKS["MSG_ALLOC"]]
WHOLE_BLOCK_STEPS = tuple(_BATCH_KEYS[_BATCH_KEYS.index("claimed") + 1 : _BATCH_KEYS.index("decode-entry")])
#: MemoryRules' key of a failed input rule -> the batch's step (the header block's rules are steps of their own).
WHOLE_BLOCK_KEYS = {"input-page": "whole-input-page", "input-ram": "whole-input-ram"}

#: Per entry: the call, the device's key and claim, the entry's record in; the result's record out.
EntryOp = Callable[[Call, DeviceKey, Claim, Any], tuple[Any, ...]]


@dataclass(frozen=True)
class BatchFormats:
    """A batched call and the codecs of its entries and results, from the spec's call table."""

    call: CallDef
    entry: FastFormat
    result: FastFormat

    @classmethod
    def of(cls, fn: FunctionNumber) -> BatchFormats:
        call = CALLS_BY_FN[fn]
        if not call.batched or call.input_entry is None or call.output_entry is None:
            raise ValueError(f"{call.name} is not a batched call")
        return cls(call, fast(call.input_entry), fast(call.output_entry))

    def batch_limit(self, max_batch: int) -> int:
        """The largest count this call accepts from a hypervisor reporting ``max_batch`` (HV-BATCH-001)."""
        return min(max_batch, self.call.max_batch or 0)


class BatchEnd(NamedTuple):
    """Where a batch stopped (spec "Batching and partial completion"): its formats and header, the first entry not
    done (``next_index``), the packed results of the entries done (the failing entry's last) and that entry's
    error, None when none failed."""

    formats: BatchFormats
    header: BatchIn
    next_index: int
    results: list[bytes]
    error: CallError | None = None


MSG_ALLOC = BatchFormats.of(FunctionNumber.MSG_ALLOC)
MSG_ACTIVATE = BatchFormats.of(FunctionNumber.MSG_ACTIVATE)
MSG_FREE = BatchFormats.of(FunctionNumber.MSG_FREE)
MSG_DEACTIVATE = BatchFormats.of(FunctionNumber.MSG_DEACTIVATE)


class MessageCalls:
    """The message calls of a hypervisor core (a part of :class:`~.core.HypervisorCore`)."""

    rules: MemoryRules
    remap: RemapPort

    def lookup_fields(
        self, c: Call, segment: int, bus: int, devfn: int, flags: int, subdevice_id: int
    ) -> tuple[DeviceKey, AssignedDevice]:
        raise NotImplementedError  # the core's device lookup

    def verdict(self, c: Call, key: str, failing: object, why: str = "") -> None:
        raise NotImplementedError  # the core's check runner (checkorder.py)

    # -- the calls -------------------------------------------------------------------------------------------

    def msg_alloc(self, c: Call) -> CallResult:
        """MSG_ALLOC: a batch of :meth:`alloc_entry` (spec "Allocate")."""
        return self.batch(c, MSG_ALLOC, self.alloc_entry)

    def msg_activate(self, c: Call) -> CallResult:
        """MSG_ACTIVATE: a batch of :meth:`activate_entry` (spec "Activate")."""
        return self.batch(c, MSG_ACTIVATE, self.activate_entry)

    def msg_deactivate(self, c: Call) -> CallResult:
        """MSG_DEACTIVATE: a batch of :meth:`deactivate_entry` (spec "Deactivate")."""
        return self.batch(c, MSG_DEACTIVATE, self.deactivate_entry)

    def msg_free(self, c: Call) -> CallResult:
        """MSG_FREE: a batch of :meth:`free_entry` (spec "Free")."""
        return self.batch(c, MSG_FREE, self.free_entry)

    # -- batches ------------------------------------------------------------------------------------------------

    def batch(self, c: Call, formats: BatchFormats, entry_op: EntryOp) -> CallResult:
        """One batch call: the header (its address, its contents, the device), then both whole blocks'
        addresses, then the entries in order (HV-CALL-005, HV-BATCH-002)."""
        header = self.read_header(c)
        self.check_header(c, formats, header)
        key, _dev = self.lookup_fields(
            c,
            header.device_segment,
            header.device_bus,
            header.device_devfn,
            header.device_flags,
            header.device_subdevice_id,
        )
        claim = c.st.claims.get(key)
        self.verdict(c, "claimed", claim is None)
        count, start = header.count, header.start
        entry_size = formats.entry.size
        self.check_whole_blocks(c, BATCH_IN.size + count * entry_size, BATCH_OUT.size + count * formats.result.size)
        assert claim is not None

        raw = self.read_entries(c, formats, header)
        yield_after = c.st.config.yield_after
        limit = count if yield_after is None else min(count, start + yield_after)
        unpack_entry, pack_result = formats.entry.unpack_record_from, formats.result.pack
        results: list[bytes] = []
        error: CallError | None = None
        for offset in range(0, (limit - start) * entry_size, entry_size):
            try:
                try:
                    entry = unpack_entry(raw, offset)
                except DecodeError as e:
                    entry = self.entry_decode_failed(c, formats, raw, offset, e)
                results.append(pack_result(*entry_op(c, key, claim, entry)))
            except CallError as e:
                error = e  # HV-BATCH-002: stop at the first failing entry
            else:
                continue
            break
        next_index = start + len(results)  # the first entry not done
        if error is not None:  # the failing entry's result is written too
            results.append(pack_result(*formats.result.build(status=error.status)))
        return self.finish_batch(c, BatchEnd(formats, header, next_index, results, error))

    def check_whole_blocks(self, c: Call, in_size: int, out_size: int) -> None:
        """Steps whole-input-page to overlap of a batch's check order: the core's memory rules on both whole
        blocks (HV-MEM-002..004), each run through :meth:`verdict` by its key (:class:`~.blocks.MemoryRules`
        names the rule that failed)."""
        failed: CallError | None = None
        try:
            self.rules.blocks(c.vm.memory, c.args[0], in_size, c.args[1], out_size)
        except CallError as e:
            failed = e
        failed_key = WHOLE_BLOCK_KEYS.get(failed.check, failed.check) if failed is not None else None
        if failed is not None and failed_key not in WHOLE_BLOCK_STEPS:
            raise failed  # a rule of the core's own MemoryRules, outside the spec's order
        for key in WHOLE_BLOCK_STEPS:
            self.verdict(c, key, key == failed_key, failed.why if failed is not None else "")
            if key == failed_key:  # a check runner that answers later (conformance's swapped-order faults)
                return

    def entry_decode_failed(self, c: Call, formats: BatchFormats, raw: bytes, offset: int, e: DecodeError) -> Any:
        """Step decode-entry failed (HV-CONV-001, HV-CONV-002): the entry fails with the precise requirement of the
        field.  When :meth:`verdict` does not end the entry (a check runner that answers later), the entry goes on
        to its next checks with its fields as they are."""
        failure = decode_failure(e)
        try:
            self.verdict(c, "decode-entry", True, failure.why)
        except CallError:
            raise failure from None
        return formats.entry.unpack_record_unchecked_from(raw, offset)

    def read_header(self, c: Call) -> BatchIn:
        """Check the header's address, read it exactly once (HV-MEM-001..003, HV-MEM-005) and decode it
        (HV-CONV-001, HV-CONV-002)."""
        memory, in_gpa = c.vm.memory, c.args[0]
        self.rules.block(memory, in_gpa, BATCH_IN.size, "input")
        try:
            header: BatchIn = BATCH_IN.unpack_record_from(memory.read(in_gpa, BATCH_IN.size))
        except DecodeError as e:
            raise decode_failure(e) from None
        return header

    def check_header(self, c: Call, formats: BatchFormats, header: BatchIn) -> None:
        """count in 1..the batch limit (hv_info.max_batch, and what a page holds for the call) and start below
        count, before any entry (HV-BATCH-001)."""
        failing = not 1 <= header.count <= formats.batch_limit(c.st.config.max_batch) or header.start >= header.count
        self.verdict(c, "count", failing, f"count {header.count} / start {header.start} out of range")

    def read_entries(self, c: Call, formats: BatchFormats, header: BatchIn) -> bytes:
        """The entries [start, count) of the input block, in one read (HV-MEM-005)."""
        size = formats.entry.size
        return c.vm.memory.read(c.args[0] + BATCH_IN.size + header.start * size, (header.count - header.start) * size)

    def finish_batch(self, c: Call, end: BatchEnd) -> CallResult:
        """Write batch_out and the results of entries [start, next_index] (the failing one included), never
        below start or after the failure (HV-BATCH-004), whenever the header passed its checks (HV-MEM-007);
        return the status (the failing entry's, else INCOMPLETE before the end, HV-BATCH-005, else SUCCESS)
        and next_index (HV-BATCH-007)."""
        formats, header, next_index, results, error = end.formats, end.header, end.next_index, end.results, end.error
        start, memory, out_gpa = header.start, c.vm.memory, c.args[1]
        if error is not None:
            status = error.status
        else:
            status = Status.INCOMPLETE if next_index < header.count else Status.SUCCESS
        out = BATCH_OUT.pack(*BATCH_OUT.build(next_index=next_index, completed=next_index - start, status=status))
        if start == 0:
            memory.write(out_gpa, b"".join((out, *results)))
        else:
            if results:
                memory.write(out_gpa + BATCH_OUT.size + start * formats.result.size, b"".join(results))
            memory.write(out_gpa, out)
        if error is not None:
            return CallResult(status, next_index, error.why, error.requirement)
        return CallResult(status, next_index)

    # -- per-entry operations --------------------------------------------------------------------------------------

    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        """One allocate entry: a reservation, or with PVMSI_ALLOC_ACTIVATE a reservation activated at once
        (HV-ALLOC-002..009, HV-ACT-001, HV-ACT-002, HV-SEC-006, HV-SEC-007)."""
        kind = KIND_BY_VALUE[e.kind]
        n, slot = e.vector_count, e.slot
        st = c.st
        self.verdict(c, "kind-claimed", not claim.kinds & kind_bit(e.kind), f"{kind.name} not claimed for the device")
        kind_limit = claim.limits[e.kind]  # MSI: the block limit; MSI-X: the table size; IMS: a tag (HV-ALLOC-004)
        if kind is MsgKind.MSI:
            self.verdict(c, "vector-count", n < 1 or n & (n - 1) or n > kind_limit, f"MSI vector_count {n}")
            self.verdict(c, "slot", slot, "MSI slot must be zero")
        else:
            self.verdict(c, "vector-count", n != 1, f"{kind.name} vector_count must be 1")
            self.verdict(c, "slot", kind is MsgKind.MSIX and slot >= kind_limit, f"slot {slot} >= {kind_limit}")
        self.verdict(c, "slot-occupied", (kind, slot) in claim.slots, f"{kind.name} slot {slot} holds a message")
        activate = bool(e.alloc_flags & AllocFlag.ACTIVATE)
        self.check_reservation(c, e, activate)
        if activate:
            self.check_target(c, e.vcpu, e.vector, n, e.flags)
        self.check_quota(c, claim, n)
        posted = bool(e.flags) and bool(e.flags & DeliveryFlag.POSTED)  # the IntFlag test only when a flag is set
        limit = st.config.max_remap_entries  # the VM's share: its messages alone never exceed it either
        base = None if limit is not None and st.vectors + n > limit else self.alloc_remapping(c, claim, e, posted)
        # base None: the VM's share (its pvmsi and emulated entries together) or the table is full (HV-SEC-007)
        self.verdict(c, "remap-share", base is None)
        assert base is not None
        handle = self.issue_handle(c, base)
        msg = Message(handle, key, kind, slot, n, 0, 0, False, base, 0, 0, targets=[None] * n)
        st.messages[handle] = msg
        claim.slots.add((kind, slot))
        claim.vectors += n
        st.vectors += n
        if not activate:  # HV-ACT-001: a handle, no pair
            reserved: AllocResult = ALLOC_RESULT.build(handle=handle)
            return reserved
        msg.vcpu, msg.vector, msg.posted = e.vcpu, e.vector, posted
        msg.targets = [(e.vcpu, e.vector + i, posted) for i in range(n)]
        msg.address, msg.data = self.message_pair(base)
        if kind is MsgKind.MSI:
            self.write_msi_capability(claim, msg)  # HV-EMU-002
        result: AllocResult = ALLOC_RESULT.build(handle=handle, address=msg.address, data=msg.data)
        return result

    def check_reservation(self, c: Call, e: AllocEntry, activate: bool) -> None:
        """A reservation names no target and a hint only when flagged (HV-ACT-002)."""
        hinted = e.alloc_flags & AllocFlag.LOCALITY_HINT
        failing = (not activate and (e.vcpu or e.vector or e.flags)) or (
            e.hint_vcpu >= c.vm.vcpu_count if hinted else e.hint_vcpu
        )
        self.verdict(c, "reservation", failing, "a reservation names no target; a hint names a vCPU, when flagged")

    def activate_entry(self, c: Call, key: DeviceKey, claim: Claim, e: ActivateEntry) -> ActivateResult:
        """One activate entry: set or change the target of a whole message (PVMSI_ACTENT_BLOCK) or of one vector of
        it (HV-RETGT-001..003, HV-ACT-007, HV-MSI-001..003)."""
        msg = self.owned(c, key, e.handle)
        was_active = msg.active
        posted = bool(e.flags) and bool(e.flags & DeliveryFlag.POSTED)
        if e.entry_flags & ActivateEntryFlag.BLOCK or msg.count == 1:
            self.check_index(c, msg, e.index, bool(e.entry_flags & ActivateEntryFlag.BLOCK))
            self.check_target(c, e.vcpu, e.vector, msg.count, e.flags)
            self.retarget_remapping(c, claim, msg, e.vcpu, e.vector, posted)
            msg.vcpu, msg.vector, msg.posted = e.vcpu, e.vector, posted
            msg.targets = [(e.vcpu, e.vector + i, posted) for i in range(msg.count)]
        else:
            self.check_index(c, msg, e.index, False)
            self.check_target(c, e.vcpu, e.vector, 1, e.flags)
            self.check_per_vector(c, msg, e.index, e.vcpu, e.vector)
            self.retarget_vector(msg, e.index, e.vcpu, e.vector, posted)
            msg.targets[e.index] = (e.vcpu, e.vector, posted)
        address, data = self.message_pair(msg.irte)
        rewrite = not was_active or (address, data) != (msg.address, msg.data)
        msg.address, msg.data = address, data
        if rewrite and msg.kind is MsgKind.MSI:
            self.write_msi_capability(claim, msg)  # HV-EMU-002, HV-EMU-003
        flags = ActivateFlag.REWRITE if rewrite else 0  # HV-RETGT-003
        result: ActivateResult = ACTIVATE_RESULT.build(address=address, data=data, flags=flags)
        return result

    def deactivate_entry(self, c: Call, key: DeviceKey, claim: Claim, e: DeactivateEntry) -> DeactivateResult:
        """One deactivate entry: the vectors named stop delivering, the handle stays (HV-ACT-005, HV-ACT-007,
        HV-MSI-002)."""
        msg = self.owned(c, key, e.handle)
        block = bool(e.entry_flags & ActivateEntryFlag.BLOCK)
        self.check_index(c, msg, e.index, block)
        if block or msg.count == 1:
            indexes = [i for i, t in enumerate(msg.targets) if t is not None]
        else:
            self.verdict(c, "per-vector", not c.st.config.per_vector_targets, "a block is deactivated whole here")
            indexes = [e.index] if e.index < len(msg.targets) and msg.targets[e.index] is not None else []
        self.verdict(c, "not-active", not indexes, f"handle {e.handle:#x} has no active vector named")
        for i in indexes:
            self.deactivate_vector(msg, i)
            msg.targets[i] = None
        result: DeactivateResult = DEACTIVATE_RESULT.build()
        return result

    def free_entry(self, c: Call, key: DeviceKey, claim: Claim, e: FreeEntry) -> FreeResult:
        """One free entry (HV-FREE-001, HV-FREE-002)."""
        self.owned(c, key, e.handle)
        self.drop(c.st, claim, e.handle)
        result: FreeResult = FREE_RESULT.build()
        return result

    # -- checks the entries share ---------------------------------------------------------------------------------

    def check_target(self, c: Call, vcpu: int, vector: int, count: int, flags: int) -> None:
        """vCPU, vector range of the platform's architecture (HV-ALLOC-006), an IMSIC MSI block's alignment
        (HV-FMT-004) and delivery flags (HV-NEG-008) of an allocate or retarget entry.  The reference numbers its
        vCPUs so that vCPU i's architectural id (APIC id, MPIDR affinity, hart id) is i (HV-FMT-003)."""
        self.verdict(c, "target-vcpu", vcpu >= c.vm.vcpu_count, f"vcpu {vcpu} does not exist")
        config = c.st.config
        low, high = config.vector_range
        self.verdict(c, "target-vector", vector < low or vector + count - 1 > high, f"vector {vector}+{count}")
        if count > 1:  # only an MSI block has an alignment (EVENT_CONFIG's target has none)
            self.verdict(c, "target-align", vector % count and config.aligned_msi_vectors, f"{vector} not aligned")
        if flags:  # only an allocate or activate entry has delivery flags
            self.verdict(c, "target-posted", flags & DeliveryFlag.POSTED and not c.st.features & Feature.POSTED)

    def check_index(self, c: Call, msg: Message, index: int, block: bool) -> None:
        """index names a vector of the message, and is zero with PVMSI_ACTENT_BLOCK (HV-ACT-007)."""
        self.verdict(c, "index", index >= msg.count or (block and index), f"index {index} of {msg.count} vectors")

    def check_per_vector(self, c: Call, msg: Message, index: int, vcpu: int, vector: int) -> None:
        """Where a block shares one address and consecutive identities (IMSIC), a vector alone may only restate the
        block's own target (HV-MSI-002)."""
        if c.st.config.per_vector_targets:
            return
        failing = not msg.active or (vcpu, vector) != (msg.vcpu, msg.vector + index)
        self.verdict(c, "per-vector", failing, f"vector {index} cannot leave its block here")

    def check_quota(self, c: Call, claim: Claim, count: int) -> None:
        """The per-device and per-VM quotas, an MSI block counting its n vectors (HV-SEC-006, HV-ALLOC-009)."""
        cfg = c.st.config
        failing = claim.vectors + count > cfg.max_messages_per_device or c.st.vectors + count > cfg.max_messages_per_vm
        self.verdict(c, "quota", failing, "quota exhausted")

    def owned(self, c: Call, key: DeviceKey, handle: int) -> Message:
        """The message of a handle this VM holds for this device (HV-SEC-003, HV-RETGT-001, HV-FREE-001)."""
        msg = c.st.messages.get(handle)
        self.verdict(c, "handle", msg is None or msg.device != key, f"handle {handle:#x} not held for this device")
        assert msg is not None
        return msg

    # -- remapping and handles ----------------------------------------------------------------------------------

    def alloc_remapping(self, c: Call, claim: Claim, e: AllocEntry, posted: bool) -> int | None:
        """Program remapping entries for a new message: not present for a reservation (HV-ACT-001; the locality
        hint's vCPU as the placeholder, HV-ACT-004), else its vCPU and vector, source validation for the claimed
        device (HV-ALLOC-007, HV-SEC-002), in the VM's share (HV-QUOTA-001); the entries named after the slot, so
        that once freed they are reissued to no other slot of the device before it is reset (HV-QUOTA-004); the
        first of ``e.vector_count`` entries, or None when the VM's share or the table is full (HV-SEC-007)."""
        activate = bool(e.alloc_flags & AllocFlag.ACTIVATE)
        return self.remap.alloc(
            e.vector_count,
            vm_id=c.vm.vm_id,
            vcpu=e.vcpu if activate else e.hint_vcpu,
            vector=e.vector,
            source=claim.source,
            posted=posted,
            slot=(claim.source.pasid, e.kind, e.slot),
            present=activate,
        )

    def retarget_remapping(self, c: Call, claim: Claim, msg: Message, vcpu: int, vector: int, posted: bool) -> None:
        """Reprogram a message's remapping entries for its new target (HV-RETGT-002); the reference retargets in
        place, so the pair, which names the entry, does not change (HV-RETGT-004)."""
        self.remap.retarget(msg.irte, msg.count, vcpu=vcpu, vector=vector, posted=posted)

    def retarget_vector(self, msg: Message, index: int, vcpu: int, vector: int, posted: bool) -> None:
        """Reprogram the remapping entry of one vector of a block alone (HV-MSI-001)."""
        self.remap.program_vector(msg.irte, index, vcpu=vcpu, vector=vector, posted=posted)

    def deactivate_vector(self, msg: Message, index: int) -> None:
        """Block the remapping entry of one vector, its target kept for the record, fault reporting suppressed
        (HV-ACT-005, HV-ACT-006)."""
        target = msg.targets[index]
        vcpu, vector, posted = target if target is not None else (0, 0, False)
        self.remap.program_vector(msg.irte, index, vcpu=vcpu, vector=vector, posted=posted, present=False)

    def release_remapping(self, msg: Message) -> None:
        """Revoke a freed message's remapping entries, so a later write of its pair is blocked (HV-FREE-002)."""
        self.remap.release(msg.irte)

    def message_pair(self, base: int) -> tuple[int, int]:
        """The address/data pair naming the remapping entries from ``base``: the data's low bits are zero for
        an MSI block (HV-ALLOC-008), and nothing of the host shows in it (HV-SEC-008)."""
        return self.remap.compose(base)

    def write_msi_capability(self, claim: Claim, msg: Message) -> None:
        """The explicit MSI model: write a message's pair and Multiple Message Enable into the device's MSI
        capability before the call returns (HV-EMU-002, HV-EMU-003, HV-EMU-007)."""
        claim.device.program_msi(msg.address, msg.data, msg.count)

    def clear_msi_capability(self, claim: Claim, msg: Message) -> None:
        """Clear the MSI capability of a freed MSI message: MSI Enable, the pair, Multiple Message Enable
        (HV-EMU-004)."""
        claim.device.clear_msi()

    def issue_handle(self, c: Call, base: int) -> int:
        """A new handle for the message at remapping entry ``base``: non-zero (HV-ALLOC-007), unguessable
        (HV-SEC-004) and never reissued to the VM (HV-SEC-005)."""
        return c.st.handles.next()

    def drop(self, st: VmPvmsi, claim: Claim, handle: int) -> int:
        """Free one message: revoke remapping, return its vectors to the quotas (HV-FREE-002); the vectors freed."""
        msg = st.messages.pop(handle)
        if msg.kind is MsgKind.MSI:
            self.clear_msi_capability(claim, msg)  # HV-EMU-004
        self.release_remapping(msg)
        claim.slots.discard((msg.kind, msg.slot))
        claim.vectors -= msg.count
        st.vectors -= msg.count
        return msg.count
