"""The check order of every call (spec "Status codes", HV-CALL-005): requests wrong in exactly two ways, the two
adjacent checks of a call's order, get the status of the earlier one, and nothing is written or changed.

Each test names the pairs it covers (call, first, second); conformance/faults/check_order.py generates one faulty
hypervisor per pair with the two checks swapped, and each is caught here.
"""

from __future__ import annotations

from typing import Any

import pytest

from pvmsi.conformance.toolkit import (
    ABSENT,
    IDXD,
    MLX5,
    MSI_DEV,
    PAGE_IN_GPA,
    PAGE_OUT_GPA,
    SENTINEL,
    Session,
    alloc_entry,
    check,
    encode,
    size,
    status_name,
)
from pvmsi.spec.calls import BATCH_CALLS
from pvmsi.spec.constants import (
    ActivateEntryFlag,
    AllocFlag,
    DeliveryFlag,
    Feature,
    FunctionNumber,
    KindMask,
    MsgKind,
    Status,
)
from pvmsi.spec.fastcodec import fast
from pvmsi.spec.formats import BATCH_IN, CLAIM_IN, DEVICE_ID, DEVICE_INFO, NEGOTIATE_OUT
from pvmsi.spec.iut import VmKnobs
from pvmsi.spec.platforms import PLATFORM_KEYS, platform
from pvmsi.spec.version import VERSION_MAJOR

requirement = pytest.mark.requirement
RID = "HV-CALL-005"
UNDEFINED_FEATURE = 1 << 40
KIND_ONLY = int(Feature.MSI | Feature.MSIX | Feature.IMS)


def expect(out: Any, status: Status, what: str) -> None:
    check(out.status == status, RID, f"{what}: {status.name}", status_name(out.status))
    check(out.value == 0, RID, f"{what}: value register 0 (HV-CALL-004)", hex(out.value))


def untouched(out: Any, what: str) -> None:
    check(not out.out or set(out.out) == {SENTINEL}, RID, f"{what}: the output block untouched", out.out.hex())


def device_call(session: Session, fn: FunctionNumber, dev: dict[str, int], kinds: int = int(KindMask.MSIX)) -> Any:
    """One device call (query, claim, release) naming the device_id ``dev``."""
    if fn is FunctionNumber.DEVICE_QUERY:
        return session.call(fn, encode(DEVICE_ID, dev), size(DEVICE_INFO))
    if fn is FunctionNumber.DEVICE_CLAIM:
        return session.call(fn, encode(CLAIM_IN, {"device": dev, "kinds": kinds}))
    return session.call(fn, encode(DEVICE_ID, dev))


def batch_entry(fn: int) -> dict[str, Any]:
    if fn == FunctionNumber.MSG_ALLOC:
        return alloc_entry(MsgKind.MSIX, 0)
    if fn == FunctionNumber.MSG_ACTIVATE:
        return {"handle": 1, "flags": 0, "vcpu": 1, "vector": 0x40}
    return {"handle": 1}


def without_subdevice(session: Session) -> None:
    offered = int(session.info().features_offered)
    session.negotiated(offered & ~int(Feature.SUBDEVICE) & ~int(Feature.POSTED))


DEVICE_CALLS = (FunctionNumber.DEVICE_QUERY, FunctionNumber.DEVICE_CLAIM, FunctionNumber.DEVICE_RELEASE)


@requirement(RID, "HV-DEV-002", "HV-NEG-008")
@pytest.mark.parametrize("fn", [*DEVICE_CALLS, *BATCH_CALLS], ids=lambda f: FunctionNumber(f).name)
def test_device_identity_order(session: Session, fn: int) -> None:
    """(call, devid-subdevice-bits, devid-subdevice-feature), (call, devid-subdevice-feature, devid-unknown): a
    sub-device id malformed and not permitted is INVALID_PARAMETER; not permitted and unknown is NOT_PERMITTED."""
    without_subdevice(session)
    for dev, status, what in (
        (IDXD.with_pasid(1 << 20), Status.INVALID_PARAMETER, "subdevice_id above bit 19, SUBDEVICE not in force"),
        (ABSENT.with_pasid(1), Status.NOT_PERMITTED, "a sub-device of no device, SUBDEVICE not in force"),
    ):
        name = FunctionNumber(fn).name
        if fn in BATCH_CALLS:
            b = session.batch(FunctionNumber(fn), dev, [batch_entry(fn)])
            expect(b.outcome, status, f"{name} {what}")
            untouched(b.outcome, f"{name} {what}")
        else:
            out = device_call(session, FunctionNumber(fn), dev.wire())
            expect(out, status, f"{name} {what}")
            untouched(out, f"{name} {what}")


@requirement(RID, "HV-DEV-001")
@pytest.mark.parametrize("fn", [FunctionNumber.DEVICE_CLAIM, FunctionNumber.DEVICE_RELEASE, *BATCH_CALLS])
def test_unknown_device_first(session: Session, fn: int) -> None:
    """(DEVICE_CLAIM, devid-unknown, kinds), (DEVICE_RELEASE, devid-unknown, not-claimed), (batch, devid-unknown,
    claimed): an unknown device is UNKNOWN_DEVICE however else the request is wrong; a batch writes nothing."""
    session.negotiated()
    name = FunctionNumber(fn).name
    if fn in BATCH_CALLS:
        b = session.batch(FunctionNumber(fn), ABSENT, [batch_entry(fn)])
        expect(b.outcome, Status.UNKNOWN_DEVICE, f"{name} on an absent (so unclaimed) device")
        untouched(b.outcome, name)
    else:
        out = device_call(session, FunctionNumber(fn), ABSENT.wire(), kinds=0)
        expect(out, Status.UNKNOWN_DEVICE, f"{name} on an absent device (and, to claim, no kinds)")


@requirement(RID, "HV-DEV-006", "HV-NEG-008", "HV-DEV-007")
def test_claim_kinds_order(session: Session) -> None:
    """(DEVICE_CLAIM, kinds, kinds-negotiated), (DEVICE_CLAIM, kinds-negotiated, claimed)."""
    session.negotiated(int(Feature.MSIX))
    out = session.claim(MSI_DEV, int(KindMask.IMS))
    expect(out, Status.INVALID_PARAMETER, "claim of IMS, which the device lacks and was not negotiated")
    session.claimed(MLX5, int(KindMask.MSIX))
    out = session.claim(MLX5, int(KindMask.MSIX | KindMask.IMS))
    expect(out, Status.NOT_PERMITTED, "a second claim, naming IMS, not negotiated")
    info = session.device_info(MLX5)
    check(info.claimed_kinds == KindMask.MSIX, RID, "the claim unchanged: MSI-X", hex(info.claimed_kinds))
    check(session.device_info(MSI_DEV).claimed_kinds == 0, RID, "the refused claim claimed nothing", "claimed kinds")


@requirement(RID, "HV-ALLOC-002", "HV-ALLOC-005", "HV-ACT-002")
def test_alloc_entry_order(session: Session) -> None:
    """(MSG_ALLOC, kind-claimed, vector-count), (MSG_ALLOC, slot-occupied, reservation)."""
    session.ready(MLX5, int(KindMask.MSIX))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSI, 0, count=3)])
    check(
        b.status == Status.NOT_PERMITTED, RID, "MSI not claimed, vector_count 3: NOT_PERMITTED", status_name(b.status)
    )
    check(b.header is not None and b.header.status == Status.NOT_PERMITTED, RID, "batch_out.status", str(b.header))
    first = session.reserve(MLX5, [{"kind": MsgKind.MSIX, "vector_count": 1, "slot": 0}])
    check(first.status == Status.SUCCESS, "HV-ACT-001", "a reservation of slot 0", status_name(first.status))
    again = session.reserve(MLX5, [{"kind": MsgKind.MSIX, "vector_count": 1, "slot": 0, "vcpu": 1}])
    check(
        again.status == Status.WRONG_STATE,
        RID,
        "slot 0 occupied and a reservation naming a vCPU: WRONG_STATE",
        status_name(again.status),
    )
    info = session.device_info(MLX5)
    check(info.messages_allocated == 1, RID, "still one message", str(info.messages_allocated))


@requirement(RID, "HV-NEG-001", "HV-NEG-002", "HV-NEG-003")
def test_negotiate_order(session: Session) -> None:
    """(NEGOTIATE, version, unoffered): VERSION_MISMATCH, nothing written; (NEGOTIATE, unoffered, no-kind):
    INVALID_PARAMETER with refused = the bits not offered."""
    offered = int(session.info().features_offered)
    out = session.negotiate(offered | UNDEFINED_FEATURE, major=VERSION_MAJOR + 1)
    expect(out, Status.VERSION_MISMATCH, "another major version and an undefined feature bit")
    untouched(out, "NEGOTIATE refused for its version")
    out = session.negotiate(UNDEFINED_FEATURE)
    expect(out, Status.INVALID_PARAMETER, "only an undefined feature bit (so no message kind)")
    res = out.decode_out(NEGOTIATE_OUT)
    check(res.refused == UNDEFINED_FEATURE, RID, f"refused {UNDEFINED_FEATURE:#x} (HV-NEG-002)", hex(res.refused))
    check(res.features == 0, RID, "features 0", hex(res.features))
    session.negotiated()  # the VM stayed OPEN


@requirement(RID, "HV-NEG-003", "HV-NEG-004")
def test_negotiate_kind_before_required(session: Session) -> None:
    """(NEGOTIATE, no-kind, required): no message kind and a required feature missing is INVALID_PARAMETER, with
    refused 0, not FEATURES_REFUSED."""
    session.use(session.new_vm(knobs=VmKnobs(features_required=int(Feature.MSIX))))
    out = session.negotiate(0)
    expect(out, Status.INVALID_PARAMETER, "no feature at all, MSI-X required")
    res = out.decode_out(NEGOTIATE_OUT)
    check(res.refused == 0, RID, "refused 0 (HV-NEG-003)", hex(res.refused))
    session.negotiated(KIND_ONLY & int(session.info().features_offered))


def revoked_handle(session: Session) -> int:
    """A message of MLX5 revoked by a storm (HV-REVOKE-001), with IDXD claimed too; its handle."""
    limit = 2
    session.use(session.new_vm(knobs=VmKnobs(storm_limit=limit)))
    session.ready(MLX5, int(KindMask.MSIX))
    session.claimed(IDXD, int(KindMask.MSIX))
    result = session.allocated(MLX5, MsgKind.MSIX, [0], vcpu=1, vector=0x50)[0]
    session.live(MLX5, MsgKind.MSIX, 0, result)
    for _ in range(limit + 1):
        session.fire(MLX5, MsgKind.MSIX, 0)
    b = session.retarget(MLX5, [{"handle": result.handle, "vcpu": 1, "vector": 0x50, "flags": 0}])
    check(b.status == Status.REVOKED, "HV-REVOKE-002", "the storm revoked the message", status_name(b.status))
    return int(result.handle)


@requirement(RID, "HV-REVOKE-002", "HV-SEC-003", "HV-ACT-007")
def test_revoked_handle_order(session: Session) -> None:
    """(MSG_ACTIVATE and MSG_DEACTIVATE: handle, revoked), (revoked, index): a revoked handle named for another
    device is UNKNOWN_HANDLE; a revoked handle with a bad index is REVOKED."""
    handle = revoked_handle(session)
    for fn in (FunctionNumber.MSG_ACTIVATE, FunctionNumber.MSG_DEACTIVATE):
        entry = {"handle": handle, "vcpu": 1, "vector": 0x50, "flags": 0} if fn == FunctionNumber.MSG_ACTIVATE else {}
        b = session.batch(fn, IDXD, [{**entry, "handle": handle}])
        check(
            b.status == Status.UNKNOWN_HANDLE, RID, f"{fn.name}: another device's revoked handle", status_name(b.status)
        )
        b = session.batch(fn, MLX5, [{**entry, "handle": handle, "index": 3}])
        check(b.status == Status.REVOKED, RID, f"{fn.name}: revoked, index 3 with BLOCK", status_name(b.status))
        check(b.header is not None and b.header.next_index == 0, RID, "next_index 0", str(b.header))


@requirement(RID, "HV-DEV-007", "HV-DEV-008")
@pytest.mark.option("msi")
def test_claim_emulated_before_limit(session: Session) -> None:
    """(DEVICE_CLAIM, emulated, claim-limit): a device whose MSI is enabled through emulation, claimed when the
    claim table is full, is WRONG_STATE."""
    session.use(session.new_vm(knobs=VmKnobs(max_claimed_devices=1)))
    session.ready(MLX5, int(KindMask.MSIX))
    session.enable(MSI_DEV, MsgKind.MSI)
    out = session.claim(MSI_DEV, int(KindMask.MSI))
    expect(out, Status.WRONG_STATE, "MSI enabled through emulation, max_claimed_devices reached")
    check(session.device_info(MSI_DEV).claimed_kinds == 0, RID, "nothing claimed", "claimed kinds")


#: The platforms whose remapping gives a multi-message MSI block one target (spec/platforms.py): the IMSIC.
ONE_TARGET_PER_BLOCK = [k for k in PLATFORM_KEYS if not platform(k).per_vector_targets]


@requirement(RID, "HV-MSI-002", "HV-ACT-005", "HV-ACT-007", "HV-FMT-004", "HV-NEG-008")
@pytest.mark.option("msi")
@pytest.mark.platforms(*ONE_TARGET_PER_BLOCK)
def test_one_target_per_block_order(session: Session) -> None:
    """Where a block has one target (the IMSIC): (MSG_ALLOC and MSG_ACTIVATE: target-align, target-posted),
    (MSG_ACTIVATE: target-posted, per-vector), (MSG_DEACTIVATE: index, per-vector), (per-vector, not-active)."""
    offered = int(session.info().features_offered)
    session.negotiated(offered & ~int(Feature.POSTED))
    session.claimed(MSI_DEV, int(KindMask.MSI))
    base, posted = session.wire_vector(0x40), int(DeliveryFlag.POSTED)
    unaligned = alloc_entry(MsgKind.MSI, 0, vcpu=1, vector=base + 1, count=4, flags=posted)
    b = session.alloc(MSI_DEV, [unaligned], raw_vectors=True)
    check(b.status == Status.INVALID_PARAMETER, RID, "MSG_ALLOC unaligned and POSTED", status_name(b.status))
    r = session.reserve(MSI_DEV, [{"kind": MsgKind.MSI, "vector_count": 4, "slot": 0}])
    check(r.status == Status.SUCCESS, "HV-ACT-001", "a 4-vector reservation", status_name(r.status))
    handle = r.results[0].handle
    for entry, status, what in (
        ({"index": 7, "entry_flags": 0}, Status.INVALID_PARAMETER, "index 7 of 4, one vector"),
        ({"index": 2, "entry_flags": 0}, Status.PER_VECTOR_REFUSED, "vector 2 alone, none active"),
    ):
        b = session.deactivate(MSI_DEV, [{"handle": handle, **entry}])
        check(b.status == status, RID, f"MSG_DEACTIVATE {what}: {status.name}", status_name(b.status))
    whole = {"handle": handle, "vcpu": 1, "vector": base + 1, "flags": posted}
    b = session.activate(MSI_DEV, [whole], raw_vectors=True)
    check(b.status == Status.INVALID_PARAMETER, RID, "MSG_ACTIVATE unaligned and POSTED", status_name(b.status))
    b = session.activate(MSI_DEV, [{**whole, "vector": base, "flags": 0}], raw_vectors=True)
    check(b.status == Status.SUCCESS, "HV-MSI-003", "the block activated whole", status_name(b.status))
    alone = {**whole, "vcpu": 2, "vector": base + 9, "index": 2, "entry_flags": 0}
    b = session.activate(MSI_DEV, [alone], raw_vectors=True)
    check(b.status == Status.NOT_PERMITTED, RID, "vector 2 alone elsewhere, POSTED", status_name(b.status))


@requirement(RID, "HV-NEG-008", "HV-SEC-006")
def test_posted_before_quota(session: Session) -> None:
    """(MSG_ALLOC, target-posted, quota): with the device's quota used up, an entry asking for POSTED delivery
    without feature POSTED is NOT_PERMITTED, not NO_RESOURCES."""
    offered = int(session.info().features_offered)
    session.negotiated(offered & ~int(Feature.POSTED))
    session.claimed(MLX5, int(KindMask.MSIX | KindMask.IMS))
    info = session.device_info(MLX5)
    quota = min(int(info.message_quota), int(session.info().max_messages_per_vm))
    slots = [(MsgKind.MSIX, s) for s in range(info.msix_table_size)] + [
        (MsgKind.IMS, s) for s in range(info.msix_table_size + quota)
    ]
    size = session.batch_limit(FunctionNumber.MSG_ALLOC)
    entries = [{"kind": k, "vector_count": 1, "slot": s} for k, s in slots[:quota]]
    done = 0
    for first in range(0, len(entries), size):
        b = session.reserve(MLX5, entries[first : first + size], in_gpa=PAGE_IN_GPA, out_gpa=PAGE_OUT_GPA)
        if b.status != Status.SUCCESS:
            pytest.skip(f"the device took {done + b.header.next_index} of its quota of {quota}")
        done += len(entries[first : first + size])
    posted = alloc_entry(MsgKind.IMS, 0x7FFF, vcpu=1, vector=0x40, flags=int(DeliveryFlag.POSTED))
    b = session.alloc(MLX5, [posted])
    check(b.status == Status.NOT_PERMITTED, RID, "POSTED not negotiated, quota used up", status_name(b.status))


# -- the batch header's last step against the whole blocks, and an entry's decoding against its first check ------------

#: A batch call's entry, as the suite sends it, for the pairs below (the handle is one the VM never held).
UNKNOWN_HANDLE_ENTRY: dict[int, dict[str, Any]] = {
    FunctionNumber.MSG_ACTIVATE: {"handle": 0x7EADBEEF, "vcpu": 1, "vector": 0x40, "flags": 0},
    FunctionNumber.MSG_DEACTIVATE: {"handle": 0x7EADBEEF},
}
DEFAULT_FIELDS: dict[int, dict[str, int]] = {
    FunctionNumber.MSG_ALLOC: {"alloc_flags": int(AllocFlag.ACTIVATE), "hint_vcpu": 0},  # one step
    FunctionNumber.MSG_ACTIVATE: {"entry_flags": int(ActivateEntryFlag.BLOCK), "index": 0},  # block-wide
    FunctionNumber.MSG_DEACTIVATE: {"entry_flags": int(ActivateEntryFlag.BLOCK), "index": 0},
}


def undecodable(fn: int, entry: dict[str, Any], how: str) -> bytes:
    """``entry`` of call ``fn`` encoded, then made to fail decoding one way: ``reserved`` sets the last byte of the
    first reserved field, ``flag`` the lowest undefined bit of the first flag field with one (HV-CONV-001)."""
    fmt = fast(BATCH_CALLS[fn].input_entry or "")
    raw = bytearray(fmt.encode({**DEFAULT_FIELDS.get(fn, {}), **entry}))
    if how == "reserved":
        leaf = next(lf for lf in fmt.leaves if lf.reserved)
        raw[leaf.offset + leaf.size - 1] |= 0x01
        return bytes(raw)
    leaf = next(lf for lf in fmt.leaves if lf.flags_mask is not None and lf.flags_mask != (1 << 8 * lf.size) - 1)
    mask = leaf.flags_mask or 0
    bit = next(b for b in range(8 * leaf.size) if not mask >> b & 1)
    value = int.from_bytes(raw[leaf.offset : leaf.offset + leaf.size], "little") | 1 << bit
    raw[leaf.offset : leaf.offset + leaf.size] = value.to_bytes(leaf.size, "little")
    return bytes(raw)


@requirement(RID, "HV-ALLOC-001", "HV-MEM-002", "HV-MEM-007")
@pytest.mark.parametrize("fn", BATCH_CALLS, ids=lambda f: FunctionNumber(f).name)
def test_claim_before_the_whole_input_block(session: Session, fn: int) -> None:
    """(batch, claimed, whole-input-page): a batch for an assigned but unclaimed device whose header fits in its
    page and whose entries cross into the next is WRONG_STATE, not INVALID_ADDRESS; the output block is untouched
    and the value register 0 (the header's checks write nothing). The same block for a claimed device is
    INVALID_ADDRESS: the page rule applies to the whole block."""
    session.negotiated()
    fmt = fast(BATCH_CALLS[fn].input_entry or "")
    name = FunctionNumber(fn).name
    for count in (1, 3):
        entries = [UNKNOWN_HANDLE_ENTRY.get(fn, batch_entry(fn)) for _ in range(count)]
        at = PAGE_IN_GPA + 0x1000 - size(BATCH_IN) - (fmt.size if count > 1 else 0)  # the header fits, no more
        b = session.batch(FunctionNumber(fn), MLX5, entries, in_gpa=at)
        expect(b.outcome, Status.WRONG_STATE, f"{name}: unclaimed device, {count} entries crossing the page")
        untouched(b.outcome, f"{name}: unclaimed device, entries crossing the page")
    session.claimed(MLX5, int(KindMask.MSIX))
    b = session.batch(FunctionNumber(fn), MLX5, [UNKNOWN_HANDLE_ENTRY.get(fn, batch_entry(fn))], in_gpa=at + fmt.size)
    expect(b.outcome, Status.INVALID_ADDRESS, f"{name}: claimed device, the entry crossing the page (HV-MEM-002)")
    untouched(b.outcome, f"{name}: claimed device, the entry crossing the page")


def first_entry_check_fails(session: Session, fn: int) -> dict[str, Any]:
    """An entry of ``fn`` that decodes and fails the entry's first check: MSG_ALLOC an IMS entry on a device
    claimed for MSI-X only (kind-claimed), MSG_ACTIVATE and MSG_DEACTIVATE a handle never issued (handle)."""
    if fn == FunctionNumber.MSG_ALLOC:
        return alloc_entry(MsgKind.IMS, 5)
    return UNKNOWN_HANDLE_ENTRY[fn]


DECODABLE_ENTRY_CALLS = [fn for fn in BATCH_CALLS if fn != FunctionNumber.MSG_FREE]  # a free entry is one handle


@requirement(RID, "HV-CONV-001", "HV-BATCH-002", "HV-MEM-007")
@pytest.mark.parametrize("how", ["reserved", "flag"])
@pytest.mark.parametrize("fn", DECODABLE_ENTRY_CALLS, ids=lambda f: FunctionNumber(f).name)
def test_entry_decoding_before_its_checks(session: Session, fn: int, how: str) -> None:
    """(MSG_ALLOC, decode-entry, kind-claimed), (MSG_ACTIVATE and MSG_DEACTIVATE, decode-entry, handle): an entry
    that does not decode (a reserved field set, or an undefined flag bit) and would fail its first check fails with
    INVALID_PARAMETER, as the first entry or after a good one; batch_out and the failing entry's result say so, the
    entries before it are done, nothing after it."""
    session.ready(MLX5, int(KindMask.MSIX))
    name = FunctionNumber(fn).name
    bad = undecodable(fn, first_entry_check_fails(session, fn), how)
    if fn == FunctionNumber.MSG_ALLOC:
        good = alloc_entry(MsgKind.MSIX, 0)
    else:
        handle = session.allocated(MLX5, MsgKind.MSIX, [1])[0].handle
        good = {"handle": handle, "vcpu": 1, "vector": 0x41, "flags": 0}
        if fn == FunctionNumber.MSG_DEACTIVATE:
            good = {"handle": handle}
    runs: list[tuple[list[dict[str, Any] | bytes], int]] = [([bad], 0), ([good, bad], 1)]
    for entries, done in runs:
        b = session.batch(FunctionNumber(fn), MLX5, entries)
        what = f"{name}: entry {done} has a {how} fault and fails its first check"
        check(b.status == Status.INVALID_PARAMETER, RID, f"{what}: INVALID_PARAMETER", status_name(b.status))
        check(b.outcome.value == done, RID, f"{what}: value register next_index {done}", hex(b.outcome.value))
        hdr = b.header
        check(
            hdr is not None and not isinstance(hdr, bytes) and hdr.status == Status.INVALID_PARAMETER,
            RID,
            f"{what}: batch_out.status INVALID_PARAMETER",
            str(hdr),
        )
        check(
            hdr.next_index == done and hdr.completed == done, RID, f"{what}: next_index = completed = {done}", str(hdr)
        )
        res = b.results[done]
        check(
            res is not None and not isinstance(res, bytes) and res.status == Status.INVALID_PARAMETER,
            RID,
            f"{what}: the failing entry's result status",
            str(res),
        )
    info = session.device_info(MLX5)
    # MSG_ALLOC: the good entry of the second batch; the others: the message made for them
    check(info.messages_allocated == 1, RID, f"{name}: one message allocated", str(info.messages_allocated))
