"""Shares of the remapping table (HV-QUOTA-001..003) and parked entries (HV-QUOTA-004)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvmsi.reference.platform.msi_format import compose_compat
from pvmsi.reference.platform.pci_caps import MSIX_CAP_OFFSET
from pvmsi.reference.platform.platform import Platform
from pvmsi.reference.platform.profiles import MLX5_LIKE
from pvmsi.reference.platform.remap import Irte, RemappingTable, Share
from pvmsi.reference.platform.requester import Bdf, Requester

NIC = Requester(0, 0x1008)
OTHER = Requester(0, 0x1010)


def entry(owner: int, source: Requester = NIC, vector: int = 0x40) -> Irte:
    return Irte(owner_vm=owner, dest_vcpu=0, vector=vector, source=source)


def test_a_vm_allocates_inside_its_share_up_to_its_limit() -> None:
    table = RemappingTable(1024)
    assert table.set_share(1, 96, 96, limit=40) == Share(96, 96, 40)
    got = [table.alloc(entry(1)) for _ in range(40)]
    assert got == list(range(96, 136))
    assert table.held(1) == 40
    assert table.alloc(entry(1)) is None  # the limit, though the share has room
    assert not table.can_alloc(1, owner=1)
    table.free(100)
    assert table.can_alloc(1, owner=1)
    assert table.alloc(entry(1), 4) is None  # 39 + 4 > 40


def test_blocks_stay_aligned_inside_a_share_that_starts_mid_word() -> None:
    table = RemappingTable(256)
    table.set_share(1, 32, 64)
    assert table.alloc(entry(1), 32) == 32
    assert table.alloc(entry(1), 32) == 64
    assert table.alloc(entry(1)) is None  # the share is full; the rest of the table is not its
    assert table.held(1) == 64


def test_shares_are_disjoint_and_others_stay_out() -> None:
    table = RemappingTable(256)
    table.set_share(1, 0, 64)
    table.set_share(2, 64, 64)
    assert table.alloc(entry(2)) == 64
    assert table.alloc(entry(3)) == 128  # no share: never inside one
    assert table.alloc(entry(1), outside_share=True) == 129  # uncharged: outside every share
    assert table.held(1) == 0


def test_a_vms_indices_depend_on_its_own_history_only() -> None:
    """HV-QUOTA-003: what VM 2 gets is the same whatever VM 1 holds."""
    quiet, busy = RemappingTable(512), RemappingTable(512)
    for table in (quiet, busy):
        table.set_share(1, 0, 256)
        table.set_share(2, 256, 256)
    for _ in range(100):
        busy.alloc(entry(1))
    assert [quiet.alloc(entry(2)) for _ in range(5)] == [busy.alloc(entry(2)) for _ in range(5)]


@pytest.mark.parametrize(
    ("first", "size", "limit", "why"),
    [(0, 48, None, "granules"), (16, 32, None, "granules"), (0, -32, None, "granules"), (0, 64, 65, "limit")],
)
def test_bad_shares_are_refused(first: int, size: int, limit: int | None, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        RemappingTable(256).set_share(1, first, size, limit)


def test_overlapping_or_occupied_shares_are_refused() -> None:
    table = RemappingTable(256)
    table.set_share(1, 0, 64)
    with pytest.raises(ValueError, match="overlaps"):
        table.set_share(2, 32, 64)
    with pytest.raises(ValueError, match="already has"):
        table.set_share(1, 64, 64)
    table.drop_share(1)
    assert table.alloc(entry(3)) == 0
    with pytest.raises(ValueError, match="holds allocated"):
        table.set_share(2, 0, 64)
    table.set_share(4, 128, 64)
    table.alloc(entry(4))
    with pytest.raises(ValueError, match="still holds"):
        table.drop_share(4)


def test_a_freed_tagged_block_is_parked_for_its_slot() -> None:
    """HV-QUOTA-004: freed, not present, still charged; reissued to the same slot, never to another slot or
    another requester id (which could free it and hand it on to a sibling slot of the first)."""
    table = RemappingTable(256)
    table.set_share(1, 0, 64, limit=2)
    a = table.alloc(entry(1), tag="slot 0")
    assert a == 0
    table.free(a)
    assert table.get(a) is None
    assert table.is_allocated(a)
    assert table.held(1) == 1
    assert table.parked_entries == 1
    assert table.parked(1) == {0: 1}
    b = table.alloc(entry(1), tag="slot 1")
    assert b == 1  # not the parked entry
    assert table.alloc(entry(1), tag="slot 2") is None  # the limit: the parked entry counts
    table.free(b)
    assert table.alloc(entry(1, OTHER), tag="x") is None  # another requester id does not take a parked one
    assert table.alloc(entry(1), tag="slot 1") == 1  # the same slot gets its own entry back
    assert table.alloc(entry(1), tag="slot 0") == 0
    assert table.occupancy == 2
    assert table.parked_entries == 0


def test_parked_blocks_are_released_by_a_device_reset_and_by_the_vm_leaving() -> None:
    table = RemappingTable(256)
    table.set_share(1, 0, 64)
    for tag in range(3):
        index = table.alloc(entry(1), tag=tag)
        assert index is not None
        table.free(index)
    table.free(table.alloc(entry(1, OTHER), tag=9) or 0)
    assert table.unpark_source(NIC.segment, NIC.rid) == 3
    assert table.held(1) == 1
    assert table.unpark_owner(1) == 1
    assert table.held(1) == 0 == table.occupancy
    table.drop_share(1)


def test_a_parked_block_is_taken_back_by_a_migration_at_its_index() -> None:
    table = RemappingTable(256)
    table.set_share(1, 0, 64)
    index = table.alloc(entry(1), tag="s")
    assert index is not None
    table.free(index)
    assert table.alloc_at(index, entry(1), tag="s")
    assert table.held(1) == 1
    assert table.parked_entries == 0


def test_the_platform_gives_each_vm_a_share_and_admits_no_more_vms_than_shares() -> None:
    platform = Platform(1024, max_vms=4)
    assert platform.share_size == 256
    vms = [platform.create_vm(1) for _ in range(4)]
    assert sorted(s.first for s in platform.table.shares().values()) == [0, 256, 512, 768]
    fifth = platform.create_vm(1)  # beyond what the host admits: an empty share, no entry at all
    assert platform.table.share(fifth.id) == Share(1024, 0, 0)
    assert platform.table.alloc(entry(fifth.id)) is None
    platform.destroy_vm(vms[1])
    assert platform.create_vm(1).id == 6
    assert platform.table.share(6) == Share(256, 256, 256)
    platform.limit_share(vms[0], 8)
    assert platform.table.share(vms[0].id) == Share(0, 256, 8)


def test_emulated_vectors_are_charged_to_the_vm() -> None:
    """HV-QUOTA-002 at the platform: the emulator's entries land in the VM's share and count."""
    platform = Platform(1024, max_vms=4)
    vm = platform.create_vm(2)
    device = platform.add_device(MLX5_LIKE)
    guest = Bdf(0, 0, 0x08)
    platform.assign(device, vm, guest)
    platform.guest_config_write(vm, guest, MSIX_CAP_OFFSET + 2, 2, 0x8000)
    for i in range(3):
        platform.guest_msix_entry_write(vm, guest, i, *compose_compat(0, 0x40 + i))
    assert platform.table.held(vm.id) == 3
    share = platform.table.share(vm.id)
    assert share is not None
    assert all(share.first <= b < share.end for b, _ in platform.table.blocks_where(owner_vm=vm.id))


def test_shares_are_at_least_a_granule() -> None:
    assert Platform(64, max_vms=8).max_vms == 2  # shares are at least 32 entries
    assert Platform(64, max_vms=None).max_vms is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.sampled_from((1, 2, 4)), st.booleans()), max_size=60))
def test_owners_never_leave_their_shares(ops: list[tuple[int, int, bool]]) -> None:
    table = RemappingTable(256)
    for owner in (1, 2, 3):
        table.set_share(owner, (owner - 1) * 64, 64, limit=48)
    held: dict[int, list[int]] = {1: [], 2: [], 3: []}
    for owner, count, free in ops:
        if free and held[owner]:
            table.free(held[owner].pop())
            continue
        base = table.alloc(entry(owner), count)
        if base is not None:
            held[owner].append(base)
            share = table.share(owner)
            assert share is not None
            assert share.first <= base
            assert base + count <= share.end
        assert table.held(owner) <= 48
