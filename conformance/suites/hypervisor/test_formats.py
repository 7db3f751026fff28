"""Message formats per platform (spec "Message formats"): the pairs follow the ICS platform's layout, the ITS
doorbell is an IOVA that delivers, an IMSIC retarget to another hart rewrites, an IMSIC MSI block is aligned."""

from __future__ import annotations

import pytest

from pvmsi.conformance.toolkit import MLX5, MSI_DEV, Session, alloc_entry, check, status_name
from pvmsi.spec.constants import ActivateFlag, FunctionNumber, KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import FireOutcome
from pvmsi.spec.platforms import parse_fields, platform

requirement = pytest.mark.requirement
option = pytest.mark.option
platforms = pytest.mark.platforms


def _delivers(session: Session, slot: int, vcpu: int, vector: int, rid: str) -> None:
    fired = session.fire(MLX5, MsgKind.MSIX, slot)
    check(
        fired.outcome == FireOutcome.DELIVERED and (fired.vcpu, fired.vector) == (vcpu, vector),
        rid,
        f"MSI-X[{slot}] delivers vector {vector:#x} to vCPU {vcpu}",
        f"{fired.outcome.name} vcpu {fired.vcpu} vector {fired.vector:#x}",
    )


@requirement("HV-FMT-001")
def test_pairs_follow_the_platform_format(session: Session) -> None:
    """GET_INFO names the ICS platform's message format; allocated and retargeted pairs fit its layout."""
    layout = platform(session.platform)
    info = session.info()
    check(
        int(info.message_format) == int(layout.message_format),
        "HV-FMT-001",
        f"message_format {layout.message_format.name} ({session.platform})",
        str(info.message_format),
    )
    session.ready()
    results = session.allocated(MLX5, MsgKind.MSIX, [0, 1], vcpu=1, vector=0x58)
    b = session.retarget(MLX5, [{"handle": results[0].handle, "vcpu": 2, "vector": 0x5A, "flags": 0}])
    check(b.status == Status.SUCCESS, "HV-FMT-001", "MSG_ACTIVATE -> SUCCESS", status_name(b.status))
    for what, pair in (("allocated", results[0]), ("allocated", results[1]), ("retargeted", b.results[0])):
        check(
            parse_fields(layout.address, pair.address) is not None and parse_fields(layout.data, pair.data) is not None,
            "HV-FMT-001",
            f"the {what} pair in the {layout.message_format.name} layout",
            f"({pair.address:#x}, {pair.data:#x})",
        )
    res = b.results[0]
    session.program(MLX5, MsgKind.MSIX, 0, res.address, res.data)
    session.program(MLX5, MsgKind.MSIX, 1, results[1].address, results[1].data)
    session.enable(MLX5, MsgKind.MSIX)
    _delivers(session, 0, 2, 0x5A, "HV-FMT-001")
    _delivers(session, 1, 1, 0x59, "HV-FMT-001")


@requirement("HV-ALLOC-007", "HV-SEC-001")
def test_every_slot_of_a_full_table_delivers_its_own_target(session: Session) -> None:
    """Every MSI-X slot of the NIC, up to its quota (2,048: a whole AMD-Vi interrupt remapping table), allocated with
    targets no two nearby slots share: each delivers its own vCPU and vector, so no
    index bit of the pair (above 8 bits, above 10, at the table's top) is lost or aliased on any platform."""
    session.ready()
    info = session.device_info(MLX5)
    slots = min(int(info.msix_table_size), int(info.messages_available))
    span = 0xFF - 0x20 + 1  # x86-style vectors 0x20..0xFF: (vCPU, vector) repeats only every 4 * 224 slots

    def target(slot: int) -> tuple[int, int]:
        return slot % session.vcpus, 0x20 + (slot // session.vcpus) % span

    limit = min(64, session.batch_limit(FunctionNumber.MSG_ALLOC))
    pairs = []
    for first in range(0, slots, limit):
        entries = [alloc_entry(MsgKind.MSIX, s, *target(s)) for s in range(first, min(slots, first + limit))]
        b = session.alloc(MLX5, entries)
        check(b.status == Status.SUCCESS, "HV-ALLOC-007", f"slots {first}.. allocate", status_name(b.status))
        pairs += [(r.address, r.data) for r in b.results]
    for slot, (address, data) in enumerate(pairs):
        session.program(MLX5, MsgKind.MSIX, slot, address, data)
    session.enable(MLX5, MsgKind.MSIX)
    session.transcript.clear()  # thousands of writes: the firing below is what a failure needs
    for slot in range(slots):
        vcpu, vector = target(slot)
        fired = session.fire(MLX5, MsgKind.MSIX, slot)
        check(
            fired.outcome == FireOutcome.DELIVERED and (fired.vcpu, fired.vector) == (vcpu, vector),
            "HV-ALLOC-007",
            f"MSI-X[{slot}] delivers vector {vector:#x} to vCPU {vcpu}",
            f"{fired.outcome.name} vcpu {fired.vcpu} vector {fired.vector:#x}",
        )
        if slot % 64 == 63:
            session.transcript.clear()


@requirement("HV-FMT-002")
@platforms("gic-its")
def test_its_doorbell_is_a_mapped_iova(session: Session) -> None:
    """On the ITS every pair of a device names the one doorbell as the device addresses it (one IOVA, EventIDs
    in the data), and it is mapped: each delivers."""
    session.ready()
    results = session.allocated(MLX5, MsgKind.MSIX, [0, 1, 2], vcpu=3, vector=0x44)
    addresses = {r.address for r in results}
    check(len(addresses) == 1, "HV-FMT-002", "one doorbell address for the device", str([hex(a) for a in addresses]))
    check(len({r.data for r in results}) == 3, "HV-FMT-002", "distinct EventIDs", str([r.data for r in results]))
    for slot, r in enumerate(results):
        session.program(MLX5, MsgKind.MSIX, slot, r.address, r.data)
    session.enable(MLX5, MsgKind.MSIX)
    for slot in range(3):
        _delivers(session, slot, 3, 0x44 + slot, "HV-FMT-002")


@requirement("HV-FMT-003")
@platforms("imsic")
def test_imsic_retarget_to_another_hart_rewrites(session: Session) -> None:
    """On the IMSIC a retarget to another vCPU returns that hart's interrupt-file address with REWRITE set, and
    the new pair delivers there; a new identity on the same hart changes the data only."""
    session.ready()
    r = session.allocated(MLX5, MsgKind.MSIX, [3], vcpu=0, vector=0x50)[0]
    session.live(MLX5, MsgKind.MSIX, 3, r)
    _delivers(session, 3, 0, 0x50, "HV-FMT-003")
    b = session.retarget(MLX5, [{"handle": r.handle, "vcpu": 2, "vector": 0x50, "flags": 0}])
    res = b.results[0]
    check(
        b.status == Status.SUCCESS and bool(res.flags & ActivateFlag.REWRITE) and res.address != r.address,
        "HV-FMT-003",
        "SUCCESS, REWRITE set, another interrupt-file address",
        f"{status_name(b.status)} flags {res.flags:#x} address {res.address:#x} (was {r.address:#x})",
    )
    session.program(MLX5, MsgKind.MSIX, 3, res.address, res.data)
    _delivers(session, 3, 2, 0x50, "HV-FMT-003")
    b = session.retarget(MLX5, [{"handle": r.handle, "vcpu": 2, "vector": 0x51, "flags": 0}])
    same = b.results[0]
    check(
        same.address == res.address and same.data != res.data and bool(same.flags & ActivateFlag.REWRITE),
        "HV-FMT-003",
        "same hart: the address kept, the data changed, REWRITE set",
        f"({same.address:#x}, {same.data:#x}) flags {same.flags:#x}",
    )


@requirement("HV-FMT-004")
@platforms("imsic")
@option("msi")
def test_imsic_msi_block_is_aligned(session: Session) -> None:
    """On the IMSIC an MSI block must start at a multiple of its size (the device ORs the index into the data):
    an unaligned one is INVALID_PARAMETER, an aligned one delivers every identity."""
    session.negotiated()
    session.claimed(MSI_DEV, int(KindMask.MSI))
    b = session.alloc(MSI_DEV, [alloc_entry(MsgKind.MSI, 0, vcpu=1, vector=0x42, count=4)])
    check(
        b.status == Status.INVALID_PARAMETER,
        "HV-FMT-004",
        "block at 0x42 of 4 -> INVALID_PARAMETER",
        status_name(b.status),
    )
    r = session.allocated(MSI_DEV, MsgKind.MSI, [0], vcpu=1, vector=0x44, count=4)[0]
    session.live(MSI_DEV, MsgKind.MSI, 0, r, vectors=4)
    for i in range(4):
        fired = session.fire(MSI_DEV, MsgKind.MSI, i)
        check(
            fired.outcome == FireOutcome.DELIVERED and (fired.vcpu, fired.vector) == (1, 0x44 + i),
            "HV-FMT-004",
            f"MSI vector {i} delivers identity {0x44 + i:#x}",
            f"{fired.outcome.name} vcpu {fired.vcpu} vector {fired.vector:#x}",
        )
