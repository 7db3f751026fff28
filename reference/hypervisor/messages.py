"""MSG_ALLOC, MSG_RETARGET and MSG_FREE, and the batch machinery they share (spec "Batching and partial
completion", "Allocate, retarget and free")."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...spec.codec import DecodeError, decode, encode
from ...spec.constants import DeliveryFlag, Feature, FunctionNumber, MsgKind, RetargetFlag, Status
from ...spec.formats import BATCH_OUT
from ...spec.layout import layout_of
from .blocks import check_block, check_disjoint
from .errors import CallError
from .vmstate import Claim, DeviceKey, Message, VmPvmsi

if TYPE_CHECKING:
    from .core import Call, CallResult, HypervisorCore

OUT_HDR_SIZE = layout_of(BATCH_OUT).size
VECTOR_MIN = 32
VECTOR_MAX = 255

EntryFn = Callable[["Call", DeviceKey, Claim, Any], dict[str, Any]]


class MessageOps:
    """The message calls of one :class:`HypervisorCore`."""

    def __init__(self, core: HypervisorCore) -> None:
        self.core = core

    # -- the calls -------------------------------------------------------------------------------------------

    def alloc(self, c: Call) -> CallResult:
        return self._batch(c, FunctionNumber.MSG_ALLOC, self._alloc_entry)

    def retarget(self, c: Call) -> CallResult:
        return self._batch(c, FunctionNumber.MSG_RETARGET, self._retarget_entry)

    def free(self, c: Call) -> CallResult:
        return self._batch(c, FunctionNumber.MSG_FREE, self._free_entry)

    # -- batches ------------------------------------------------------------------------------------------------

    def _batch(self, c: Call, fn: FunctionNumber, entry_fn: EntryFn) -> CallResult:
        from .core import CallResult

        core = self.core
        entry_fmt, result_fmt = core.ENTRY[fn]
        entry_size, result_size = layout_of(entry_fmt).size, layout_of(result_fmt).size
        hdr_size, out_hdr_size = layout_of(core.BATCH_IN).size, layout_of(core.BATCH_OUT).size
        mem = c.vm.memory

        # The header first: its address, then its contents (HV-CALL-005); read exactly once (HV-MEM-005).
        check_block(mem, c.in_gpa, hdr_size, "input")
        try:
            hdr = decode(core.BATCH_IN, mem.read(c.in_gpa, hdr_size))
        except DecodeError as e:
            raise CallError(Status.INVALID_PARAMETER, str(e)) from None
        count, start = hdr.count, hdr.start
        if not 1 <= count <= core.config.max_batch or start >= count:
            raise CallError(Status.INVALID_PARAMETER, f"count {count} / start {start} out of range (HV-BATCH-001)")
        in_size, out_size = hdr_size + count * entry_size, out_hdr_size + count * result_size
        check_block(mem, c.in_gpa, in_size, "input")
        check_block(mem, c.out_gpa, out_size, "output")
        check_disjoint(c.in_gpa, in_size, c.out_gpa, out_size)
        key, _dev = core.lookup(c, hdr.device)
        claim = c.st.claims.get(key)
        if claim is None:
            raise CallError(Status.WRONG_STATE, "device not claimed (HV-ALLOC-001)")

        # Entries [start, count): one read (HV-MEM-005), decoded before anything is acted on.
        first = c.in_gpa + hdr_size + start * entry_size
        raw = mem.read(first, (count - start) * entry_size)
        limit = count if core.config.yield_after is None else min(count, start + core.config.yield_after)
        index, status = start, Status.SUCCESS
        while index < limit:
            off = (index - start) * entry_size
            try:
                entry = decode(entry_fmt, raw[off : off + entry_size])
            except DecodeError:
                status = Status.INVALID_PARAMETER
                self._write_result(c, result_fmt, result_size, index, {"status": status})
                break
            try:
                result = entry_fn(c, key, claim, entry)
            except CallError as e:
                status = e.status  # HV-BATCH-002: stop at the first failing entry
                self._write_result(c, result_fmt, result_size, index, {"status": status})
                break
            self._write_result(c, result_fmt, result_size, index, {**result, "status": Status.SUCCESS})
            index += 1
        if status is Status.SUCCESS and index < count:
            status = Status.INCOMPLETE  # HV-BATCH-005 (at least one entry done: HV-BATCH-006)
        mem.write(  # HV-MEM-007, HV-BATCH-007
            c.out_gpa,
            encode(core.BATCH_OUT, {"next_index": index, "completed": index - start, "status": int(status)}),
        )
        return CallResult(status, index)

    @staticmethod
    def _write_result(c: Call, fmt: Any, size: int, index: int, values: dict[str, Any]) -> None:
        full = {f.name: 0 for f in layout_of(fmt).fields if not f.reserved}
        full.update(values)
        c.vm.memory.write(c.out_gpa + OUT_HDR_SIZE + index * size, encode(fmt, full))

    # -- per-entry checks -----------------------------------------------------------------------------------------

    def _target(self, c: Call, vcpu: int, vector: int, count: int, flags: int) -> None:
        """vCPU, vector range and delivery flags (HV-ALLOC-006, HV-NEG-008)."""
        if vcpu >= c.vm.vcpu_count:
            raise CallError(Status.INVALID_PARAMETER, f"vcpu {vcpu} does not exist (HV-ALLOC-006)")
        if vector < VECTOR_MIN or vector + count - 1 > VECTOR_MAX:
            raise CallError(Status.INVALID_PARAMETER, f"vector {vector}+{count} out of range (HV-ALLOC-006)")
        if flags & DeliveryFlag.POSTED and not c.st.features & Feature.POSTED:
            raise CallError(Status.NOT_PERMITTED, "POSTED without feature POSTED (HV-NEG-008)")

    def _alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: Any) -> dict[str, Any]:
        kind: MsgKind = e.kind
        dev, cfg = claim.device, self.core.config
        if not claim.kinds & (1 << kind):
            raise CallError(Status.NOT_PERMITTED, f"{kind.name} not claimed for the device (HV-ALLOC-002)")
        n = e.vector_count
        if kind is MsgKind.MSI:
            if n < 1 or n & (n - 1) or n > dev.msi_max_vectors:
                raise CallError(Status.INVALID_PARAMETER, f"MSI vector_count {n} (HV-ALLOC-003)")
            if e.slot:
                raise CallError(Status.INVALID_PARAMETER, "MSI slot must be zero (HV-ALLOC-004)")
        else:
            if n != 1:
                raise CallError(Status.INVALID_PARAMETER, f"{kind.name} vector_count must be 1 (HV-ALLOC-003)")
            size = dev.msix_table_size if kind is MsgKind.MSIX else dev.ims_slots
            if e.slot >= size:
                raise CallError(Status.INVALID_PARAMETER, f"slot {e.slot} >= {size} (HV-ALLOC-004)")
        if (kind, e.slot) in claim.slots:
            raise CallError(Status.WRONG_STATE, f"{kind.name} slot {e.slot} already holds a message (HV-ALLOC-005)")
        self._target(c, e.vcpu, e.vector, n, e.flags)
        st = c.st
        if claim.vectors + n > cfg.max_messages_per_device or st.vectors + n > cfg.max_messages_per_vm:
            raise CallError(Status.NO_RESOURCES, "quota exhausted (HV-SEC-006, HV-ALLOC-009)")
        posted = bool(e.flags & DeliveryFlag.POSTED)
        base = self.core.remap.alloc(  # HV-ALLOC-007, HV-SEC-002: source validation programmed with the entry
            n, vm_id=c.vm.vm_id, vcpu=e.vcpu, vector=e.vector, source=claim.device.source, posted=posted
        )
        if base is None:
            raise CallError(Status.NO_RESOURCES, "interrupt-remapping table full (HV-SEC-007)")
        address, data = self.core.remap.compose(base)  # HV-ALLOC-008: data's low bits are zero for a block
        handle = st.handles.next()
        st.messages[handle] = Message(handle, key, kind, e.slot, n, e.vcpu, e.vector, posted, base, address, data)
        claim.slots.add((kind, e.slot))
        claim.vectors += n
        st.vectors += n
        return {"handle": handle, "address": address, "data": data}

    def _owned(self, c: Call, key: DeviceKey, handle: int) -> Message:
        """The message of a handle this VM holds for this device (HV-SEC-003, HV-RETGT-001, HV-FREE-001)."""
        msg = c.st.messages.get(handle)
        if msg is None or msg.device != key:
            raise CallError(Status.UNKNOWN_HANDLE, f"handle {handle:#x} not held for this device")
        return msg

    def _retarget_entry(self, c: Call, key: DeviceKey, claim: Claim, e: Any) -> dict[str, Any]:
        msg = self._owned(c, key, e.handle)
        self._target(c, e.vcpu, e.vector, msg.count, e.flags)
        posted = bool(e.flags & DeliveryFlag.POSTED)
        # HV-RETGT-002, in place (HV-RETGT-004): the pair, which names the entry, does not change
        self.core.remap.retarget(msg.irte, msg.count, vcpu=e.vcpu, vector=e.vector, posted=posted)
        msg.vcpu, msg.vector, msg.posted = e.vcpu, e.vector, posted
        address, data = self.core.remap.compose(msg.irte)
        rewrite = (address, data) != (msg.address, msg.data)
        msg.address, msg.data = address, data
        return {"address": address, "data": data, "flags": RetargetFlag.REWRITE if rewrite else 0}  # HV-RETGT-003

    def _free_entry(self, c: Call, key: DeviceKey, claim: Claim, e: Any) -> dict[str, Any]:
        self._owned(c, key, e.handle)
        self.drop(c.st, claim, e.handle)
        return {}

    # -- shared ---------------------------------------------------------------------------------------------------

    def drop(self, st: VmPvmsi, claim: Claim, handle: int) -> int:
        """Free one message: revoke remapping, return its vectors to the quotas (HV-FREE-002)."""
        msg = st.messages.pop(handle)
        self.core.remap.release(msg.irte)
        claim.slots.discard((msg.kind, msg.slot))
        claim.vectors -= msg.count
        st.vectors -= msg.count
        return msg.count


