"""MSG_ALLOC, MSG_RETARGET and MSG_FREE, and the batch machinery they share (spec "Batching and partial
completion", "Allocate, retarget and free")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ...spec.codec import DecodeError
from ...spec.constants import DeliveryFlag, Feature, FunctionNumber, MsgKind, RetargetFlag, Status
from ...spec.fastcodec import FastFormat, Values, fast
from .blocks import MemoryRules
from .call import Call, CallResult
from .errors import CallError
from .ports import AssignedDevice, RemapPort
from .vmstate import Claim, DeviceKey, Message, VmPvmsi

# The hot path uses the codec derived from the construct definitions (spec/fastcodec.py; tests/test_fastcodec.py
# proves it equal to the construct codec): one struct unpack/pack plus the generated field checks per block.
FAST_BATCH_IN = fast("batch_in")
FAST_BATCH_OUT = fast("batch_out")
HDR_SIZE = FAST_BATCH_IN.size
OUT_HDR_SIZE = FAST_BATCH_OUT.size
_unpack_header, _pack_out_header = FAST_BATCH_IN.unpack_from, FAST_BATCH_OUT.pack
# Module constants: an enum member read from a global costs a third of one read through its class.
_SUCCESS, _INCOMPLETE = Status.SUCCESS, Status.INCOMPLETE
_INVALID_PARAMETER, _WRONG_STATE = Status.INVALID_PARAMETER, Status.WRONG_STATE
_NOT_PERMITTED, _NO_RESOURCES, _UNKNOWN_HANDLE = Status.NOT_PERMITTED, Status.NO_RESOURCES, Status.UNKNOWN_HANDLE
_MSI = MsgKind.MSI
_new_result = tuple.__new__
VECTOR_MIN = 32
VECTOR_MAX = 255
_KINDS: dict[int, MsgKind] = {int(k): k for k in MsgKind}
_POSTED = int(DeliveryFlag.POSTED)
_REWRITE = int(RetargetFlag.REWRITE)
_F_POSTED = int(Feature.POSTED)

#: Per entry: the decoded entry (a flat tuple in the entry format's field order) in, the result tuple out.
EntryFn = Callable[["Call", DeviceKey, Claim, Values], Values]


class BatchShape:
    """The entry and result codecs of one batch call, and the result tuple of a failed entry."""

    def __init__(self, entry: str, result: str) -> None:
        self.entry: FastFormat = fast(entry)
        self.result: FastFormat = fast(result)
        self.status_index = self.result.index("status")

    def failed(self, status: int) -> Values:
        values = [0] * len(self.result.fields)
        values[self.status_index] = status
        return tuple(values)


SHAPES: dict[FunctionNumber, BatchShape] = {
    FunctionNumber.MSG_ALLOC: BatchShape("alloc_entry", "alloc_result"),
    FunctionNumber.MSG_RETARGET: BatchShape("retarget_entry", "retarget_result"),
    FunctionNumber.MSG_FREE: BatchShape("free_entry", "free_result"),
}

_ALLOC, _RETARGET, _FREE = (
    SHAPES[fn] for fn in (FunctionNumber.MSG_ALLOC, FunctionNumber.MSG_RETARGET, FunctionNumber.MSG_FREE)
)


class CoreServices(Protocol):
    """What the message calls use of the hypervisor core they belong to."""

    rules: MemoryRules
    remap: RemapPort

    def lookup_fields(
        self, c: Call, segment: int, bus: int, devfn: int, flags: int, subdevice_id: int
    ) -> tuple[DeviceKey, AssignedDevice]: ...


class MessageOps:
    """The message calls of one hypervisor core."""

    def __init__(self, core: CoreServices) -> None:
        self.core = core
        self._result = CallResult

    # -- the calls -------------------------------------------------------------------------------------------

    def alloc(self, c: Call) -> CallResult:
        return self._batch(c, _ALLOC, self._alloc_entry)

    def retarget(self, c: Call) -> CallResult:
        return self._batch(c, _RETARGET, self._retarget_entry)

    def free(self, c: Call) -> CallResult:
        return self._batch(c, _FREE, self._free_entry)

    # -- batches ------------------------------------------------------------------------------------------------

    def _batch(self, c: Call, shape: BatchShape, entry_fn: EntryFn) -> CallResult:
        core, st, mem = self.core, c.st, c.vm.memory
        in_gpa, out_gpa = c.args[0], c.args[1]
        rules = core.rules

        # HV-CALL-005: the header (its address, its contents, the device), then both whole blocks' addresses,
        # then the entries.  The header is read exactly once (HV-MEM-005).
        rules.block(mem, in_gpa, HDR_SIZE, "input")
        try:
            seg, bus, devfn, id_flags, sub_id, _r, count, start, _r0, _r1 = _unpack_header(mem.read(in_gpa, HDR_SIZE))
        except DecodeError as e:
            raise CallError(_INVALID_PARAMETER, str(e)) from None
        if not 1 <= count <= st.config.max_batch or start >= count:
            raise CallError(_INVALID_PARAMETER, f"count {count} / start {start} out of range (HV-BATCH-001)")
        key, _dev = core.lookup_fields(c, seg, bus, devfn, id_flags, sub_id)
        claim = st.claims.get(key)
        if claim is None:
            raise CallError(_WRONG_STATE, "device not claimed (HV-ALLOC-001)")
        entry_ff, result_ff = shape.entry, shape.result
        entry_size, result_size = entry_ff.size, result_ff.size
        in_size, out_size = HDR_SIZE + count * entry_size, OUT_HDR_SIZE + count * result_size
        rules.blocks(mem, in_gpa, in_size, out_gpa, out_size)

        # Entries [start, count): one read (HV-MEM-005); each decoded before it is acted on.
        raw = mem.read(in_gpa + HDR_SIZE + start * entry_size, (count - start) * entry_size)
        yield_after = st.config.yield_after
        limit = count if yield_after is None else min(count, start + yield_after)
        unpack_entry, pack_result = entry_ff.unpack_from, result_ff.pack
        results: list[bytes] = []
        status = _SUCCESS
        for offset in range(0, (limit - start) * entry_size, entry_size):
            try:
                results.append(pack_result(*entry_fn(c, key, claim, unpack_entry(raw, offset))))
            except DecodeError:
                status = _INVALID_PARAMETER  # HV-CONV-001, HV-CONV-002 for this entry
            except CallError as e:
                status = e.status  # HV-BATCH-002: stop at the first failing entry
            else:
                continue
            break
        index = start + len(results)  # the first entry not done
        if status is not _SUCCESS:
            results.append(pack_result(*shape.failed(status)))  # the failing entry's result is written too
        elif index < count:
            status = _INCOMPLETE  # HV-BATCH-005 (at least one entry done: HV-BATCH-006)
        hdr = _pack_out_header(index, index - start, status, 0)
        # Results of entries [start, index] (the failing one included), never below start or after the failure
        # (HV-BATCH-004); batch_out whenever the header passed its checks (HV-MEM-007, HV-BATCH-007).
        if start == 0:
            mem.write(out_gpa, b"".join((hdr, *results)))
        else:
            if results:
                mem.write(out_gpa + OUT_HDR_SIZE + start * result_size, b"".join(results))
            mem.write(out_gpa, hdr)
        return _new_result(self._result, (status, index, ""))  # CallResult(status, index), without a frame

    # -- per-entry checks -----------------------------------------------------------------------------------------

    def _target(self, c: Call, vcpu: int, vector: int, count: int, flags: int) -> None:
        """vCPU, vector range and delivery flags (HV-ALLOC-006, HV-NEG-008)."""
        if vcpu >= c.vm.vcpu_count:
            raise CallError(_INVALID_PARAMETER, f"vcpu {vcpu} does not exist (HV-ALLOC-006)")
        if vector < VECTOR_MIN or vector + count - 1 > VECTOR_MAX:
            raise CallError(_INVALID_PARAMETER, f"vector {vector}+{count} out of range (HV-ALLOC-006)")
        if flags & _POSTED and not c.st.features & _F_POSTED:
            raise CallError(_NOT_PERMITTED, "POSTED without feature POSTED (HV-NEG-008)")

    def _alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
        kind_value, flags, n, slot, vcpu, vector, _reserved = e
        kind = _KINDS[kind_value]
        st = c.st
        cfg = st.config
        if not claim.kinds & (1 << kind_value):
            raise CallError(_NOT_PERMITTED, f"{kind.name} not claimed for the device (HV-ALLOC-002)")
        if kind is _MSI:
            if n < 1 or n & (n - 1) or n > claim.limits[kind_value]:
                raise CallError(_INVALID_PARAMETER, f"MSI vector_count {n} (HV-ALLOC-003)")
            if slot:
                raise CallError(_INVALID_PARAMETER, "MSI slot must be zero (HV-ALLOC-004)")
        else:
            if n != 1:
                raise CallError(_INVALID_PARAMETER, f"{kind.name} vector_count must be 1 (HV-ALLOC-003)")
            size = claim.limits[kind_value]  # the MSI-X table size or the IMS slots
            if slot >= size:
                raise CallError(_INVALID_PARAMETER, f"slot {slot} >= {size} (HV-ALLOC-004)")
        if (kind, slot) in claim.slots:
            raise CallError(_WRONG_STATE, f"{kind.name} slot {slot} already holds a message (HV-ALLOC-005)")
        self._target(c, vcpu, vector, n, flags)
        if claim.vectors + n > cfg.max_messages_per_device or st.vectors + n > cfg.max_messages_per_vm:
            raise CallError(_NO_RESOURCES, "quota exhausted (HV-SEC-006, HV-ALLOC-009)")
        posted = bool(flags & _POSTED)
        if cfg.max_remap_entries is not None and st.vectors + n > cfg.max_remap_entries:
            raise CallError(_NO_RESOURCES, "interrupt-remapping table full (HV-SEC-007)")
        remap = self.core.remap
        base = remap.alloc(  # HV-ALLOC-007, HV-SEC-002: source validation programmed with the entry
            n, vm_id=c.vm.vm_id, vcpu=vcpu, vector=vector, source=claim.source, posted=posted
        )
        if base is None:
            raise CallError(_NO_RESOURCES, "interrupt-remapping table full (HV-SEC-007)")
        address, data = remap.compose(base)  # HV-ALLOC-008: data's low bits are zero for a block
        handle = st.handles.next()
        st.messages[handle] = Message(handle, key, kind, slot, n, vcpu, vector, posted, base, address, data)
        claim.slots.add((kind, slot))
        claim.vectors += n
        st.vectors += n
        return (handle, address, data, 0)

    def _owned(self, c: Call, key: DeviceKey, handle: int) -> Message:
        """The message of a handle this VM holds for this device (HV-SEC-003, HV-RETGT-001, HV-FREE-001)."""
        msg = c.st.messages.get(handle)
        if msg is None or msg.device != key:
            raise CallError(_UNKNOWN_HANDLE, f"handle {handle:#x} not held for this device")
        return msg

    def _retarget_entry(self, c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
        handle, vcpu, vector, flags = e[0], e[1], e[2], e[3]
        msg = self._owned(c, key, handle)
        self._target(c, vcpu, vector, msg.count, flags)
        posted = bool(flags & _POSTED)
        # HV-RETGT-002, in place (HV-RETGT-004): the pair, which names the entry, does not change
        self.core.remap.retarget(msg.irte, msg.count, vcpu=vcpu, vector=vector, posted=posted)
        msg.vcpu, msg.vector, msg.posted = vcpu, vector, posted
        address, data = self.core.remap.compose(msg.irte)
        rewrite = (address, data) != (msg.address, msg.data)
        msg.address, msg.data = address, data
        return (address, data, 0, _REWRITE if rewrite else 0, 0)  # HV-RETGT-003

    def _free_entry(self, c: Call, key: DeviceKey, claim: Claim, e: Values) -> Values:
        self._owned(c, key, e[0])
        self.drop(c.st, claim, e[0])
        return (0, 0)

    # -- shared ---------------------------------------------------------------------------------------------------

    def drop(self, st: VmPvmsi, claim: Claim, handle: int) -> int:
        """Free one message: revoke remapping, return its vectors to the quotas (HV-FREE-002)."""
        msg = st.messages.pop(handle)
        self.core.remap.release(msg.irte)
        claim.slots.discard((msg.kind, msg.slot))
        claim.vectors -= msg.count
        st.vectors -= msg.count
        return msg.count
