"""Every platform's message format (spec "Message formats"): the layouts in spec/platforms.py and the platform
model's encoding and validation for VT-d, AMD-Vi, the GIC ITS behind an SMMU and the RISC-V IMSIC."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvmsi.reference.platform.fault import FaultReason
from pvmsi.reference.platform.formats import AmdVi, GicIts, Imsic, Vtd, make_format
from pvmsi.reference.platform.formats.base import DeviceTable
from pvmsi.reference.platform.formats.imsic import IDENTITIES, file_address
from pvmsi.reference.platform.formats.its import DOORBELL_IOVA, ITS_BASE, TRANSLATER_OFFSET
from pvmsi.reference.platform.iommu import Delivery, Fault, Iommu
from pvmsi.reference.platform.msi_format import compose
from pvmsi.reference.platform.remap import Irte, RemappingTable
from pvmsi.reference.platform.requester import Requester
from pvmsi.spec.constants import MessageFormat
from pvmsi.spec.platforms import (
    ARCH_TARGETS,
    PLATFORM_KEYS,
    PLATFORMS,
    BitField,
    arch_target,
    compose_fields,
    parse_fields,
    platform,
    platform_of_format,
)

DEV = Requester(0, 0x0310)
OTHER = Requester(0, 0x0318)


def _covered(fields: tuple[BitField, ...], width: int) -> None:
    seen = 0
    for f in fields:
        assert not seen & f.mask, f"{f.name} overlaps"
        seen |= f.mask
    assert seen == (1 << width) - 1, "every bit is named"


@pytest.mark.parametrize("key", PLATFORM_KEYS)
def test_layouts_name_every_bit_once(key: str) -> None:
    p = platform(key)
    _covered(p.address, 64)
    _covered(p.data, 32)
    assert platform_of_format(p.message_format) is p
    assert p.arch in ARCH_TARGETS


def test_the_four_formats_and_their_architectures() -> None:
    assert {p.message_format for p in PLATFORMS} == set(MessageFormat)
    assert {p.key: p.arch for p in PLATFORMS} == {
        "vtd": "x86_64",
        "amd-vi": "x86_64",
        "gic-its": "arm64",
        "imsic": "riscv64",
    }
    assert [p.key for p in PLATFORMS if p.retarget_changes_pair] == ["imsic"]
    with pytest.raises(KeyError):
        platform("ppc")


def test_vector_ranges_per_architecture() -> None:
    assert (arch_target("vtd").vector_min, arch_target("vtd").vector_max) == (32, 255)
    assert arch_target("gic-its").vector_min == 8192
    assert (arch_target("imsic").vector_min, arch_target("imsic").vector_max) == (1, 2047)


@given(st.integers(0, 0xFFFF))
def test_vtd_layout_is_the_model_encoding(index: int) -> None:
    address, data = compose(index)
    fields = parse_fields(platform("vtd").address, address)
    assert fields is not None
    assert fields["handle_lo"] | fields["handle_hi"] << 15 == index
    assert compose_fields(platform("vtd").address, handle_lo=index & 0x7FFF, handle_hi=index >> 15) == address
    assert parse_fields(platform("vtd").data, data) == {"subhandle": 0}


def test_compose_fields_rejects_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        compose_fields(platform("amd-vi").data, index=1 << 11)
    with pytest.raises(ValueError, match="no such field"):
        compose_fields(platform("amd-vi").data, index=1, vector=3)
    assert parse_fields(platform("amd-vi").data, 1 << 11) is None


def _iommu(key: str) -> Iommu:
    table = RemappingTable(1024)
    iommu = Iommu(table)
    iommu.format = make_format(key, table)
    return iommu


def _fault(result: Delivery | Fault) -> FaultReason:
    assert isinstance(result, Fault), result
    return result.reason


def test_amd_vi_indexes_the_requesters_own_table_by_data() -> None:
    iommu = _iommu("amd-vi")
    fmt = iommu.format
    assert isinstance(fmt, AmdVi)
    ref = fmt.alloc(Irte(2, 1, 0x41, DEV))
    assert ref is not None
    address, data = fmt.compose(ref)
    assert address == 0xFEE00000  # the address stays compatibility-looking
    assert data == 0  # data is the index
    assert iommu.translate(DEV, address, data) == Delivery(2, 1, 0x41, 0)
    assert _fault(iommu.translate(OTHER, address, data)) is FaultReason.NOT_PRESENT  # OTHER has no table
    other = fmt.alloc(Irte(3, 0, 0x50, OTHER))
    assert other is not None
    assert fmt.compose(other) == (address, data)  # same pair, another device's table
    assert iommu.translate(OTHER, address, data) == Delivery(3, 0, 0x50, 0)
    assert _fault(iommu.translate(DEV, address, data | 1 << 11)) is FaultReason.RESERVED_BITS
    assert _fault(iommu.translate(DEV, address, 5)) is FaultReason.NOT_PRESENT
    fmt.update(ref, 1, dest_vcpu=3, vector=0x60, posted=False)
    assert fmt.compose(ref) == (address, data)  # retarget in place
    assert iommu.translate(DEV, address, data) == Delivery(2, 3, 0x60, 0)
    assert fmt.free(ref) == 1
    assert _fault(iommu.translate(DEV, address, data)) is FaultReason.NOT_PRESENT


def test_amd_vi_multi_message_block_and_table_size() -> None:
    fmt = AmdVi()
    ref = fmt.alloc(Irte(1, 0, 0x80, DEV), 8)
    assert ref is not None
    _, data = fmt.compose(ref)
    assert data % 8 == 0
    table = fmt.table_of(0, DEV.rid)
    assert table is not None
    assert table.size == 2048


def test_its_doorbell_is_an_iova_in_the_msi_window() -> None:
    iommu = _iommu("gic-its")
    fmt = iommu.format
    assert isinstance(fmt, GicIts)
    ref = fmt.alloc(Irte(4, 2, 8200, DEV))
    assert ref is not None
    address, event = fmt.compose(ref)
    assert address == DOORBELL_IOVA == 0x8000040
    assert address != ITS_BASE + TRANSLATER_OFFSET  # never the host physical address
    assert fmt.translate_iova(DEV, address) == ITS_BASE + TRANSLATER_OFFSET
    assert iommu.translate(DEV, address, event) == Delivery(4, 2, 8200, event)
    # a device without an MSI mapping faults in the SMMU; a write of another IOVA in the window too
    assert _fault(iommu.translate(OTHER, address, event)) is FaultReason.NOT_INTERRUPT_ADDRESS
    assert _fault(iommu.translate(DEV, address + 0x10000, event)) is FaultReason.NOT_INTERRUPT_ADDRESS
    assert _fault(iommu.translate(DEV, address, event + 1)) is FaultReason.NOT_PRESENT  # unmapped EventID
    fmt.update(ref, 1, dest_vcpu=0, vector=9000, posted=True)
    assert fmt.compose(ref) == (address, event)  # MOVI: the pair stays
    assert iommu.translate(DEV, address, event) == Delivery(4, 0, 9000, event, True)
    fmt.free(ref)
    assert _fault(iommu.translate(DEV, address, event)) is FaultReason.NOT_PRESENT


def test_imsic_address_is_the_harts_interrupt_file() -> None:
    iommu = _iommu("imsic")
    fmt = iommu.format
    assert isinstance(fmt, Imsic)
    ref = fmt.alloc(Irte(5, 1, 0x30, DEV))
    assert ref is not None
    address, data = fmt.compose(ref)
    assert (address, data) == (file_address(1), 0x30)
    assert iommu.translate(DEV, address, data) == Delivery(5, 1, 0x30, 0x30)
    assert _fault(iommu.translate(OTHER, address, data)) is FaultReason.NOT_PRESENT  # not in OTHER's MSI PT
    assert _fault(iommu.translate(DEV, address, IDENTITIES + 1)) is FaultReason.RESERVED_BITS
    assert _fault(iommu.translate(DEV, address, 0)) is FaultReason.RESERVED_BITS
    fmt.update(ref, 1, dest_vcpu=2, vector=0x30, posted=False)
    moved = fmt.compose(ref)
    assert moved == (file_address(2), 0x30)  # another hart: another address (REWRITE)
    # the old pair, in the device until the guest rewrites it, still reaches the old hart (HV-FLIGHT-001)
    assert iommu.translate(DEV, address, data) == Delivery(5, 1, 0x30, 0x30)
    assert iommu.translate(DEV, *moved) == Delivery(5, 2, 0x30, 0x30)
    fmt.update(ref, 1, dest_vcpu=3, vector=0x30, posted=False)  # moved again: the first file is let go
    assert _fault(iommu.translate(DEV, address, data)) is FaultReason.NOT_PRESENT
    assert iommu.translate(DEV, *moved) == Delivery(5, 2, 0x30, 0x30)
    fmt.free(ref)
    assert _fault(iommu.translate(DEV, *moved)) is FaultReason.NOT_PRESENT
    assert _fault(iommu.translate(DEV, file_address(3), 0x30)) is FaultReason.NOT_PRESENT


def test_imsic_keeps_a_file_mapped_while_any_message_targets_it() -> None:
    fmt = Imsic()
    a = fmt.alloc(Irte(1, 0, 0x40, DEV))
    b = fmt.alloc(Irte(1, 0, 0x41, DEV))
    assert a is not None
    assert b is not None
    fmt.free(a)
    assert fmt.resolve(DEV, file_address(0), 0x40) == (0x40, Irte(1, 0, 0x40, DEV))
    fmt.free(b)
    assert fmt.resolve(DEV, file_address(0), 0x41) is FaultReason.NOT_PRESENT
    assert fmt.resolve(DEV, file_address(0) + 4, 0x41) is FaultReason.NOT_INTERRUPT_ADDRESS


def test_writes_outside_the_format_go_to_the_emulation_table() -> None:
    iommu = _iommu("imsic")
    index = iommu.table.alloc(Irte(1, 0, 0x40, DEV))
    assert index is not None
    assert iommu.translate(DEV, *compose(index)) == Delivery(1, 0, 0x40, index)


def test_vtd_format_over_the_shared_table() -> None:
    table = RemappingTable(64)
    fmt = Vtd(table)
    ref = fmt.alloc(Irte(1, 0, 0x40, DEV), 4)
    assert ref is not None
    assert fmt.compose(ref) == compose(ref)
    fmt.update(ref, 4, dest_vcpu=2, vector=0x50, posted=False)
    assert [table.get(ref + i) for i in range(4)] == [Irte(1, 2, 0x50 + i, DEV, generation=1) for i in range(4)]
    assert fmt.refs_where(owner_vm=1) == [ref]
    assert fmt.resolve(DEV, 0xFEE00000, 0) is FaultReason.COMPATIBILITY_FORMAT
    assert fmt.free(ref) == 4


def test_device_table_allocates_lowest_free_and_aligned_blocks() -> None:
    t = DeviceTable(64)
    e = Irte(1, 0, 0x40, DEV)
    assert [t.alloc(e, 1) for _ in range(3)] == [0, 1, 2]
    assert t.alloc(e, 4) == 4
    assert t.alloc(e, 1) == 3  # below the block: the freed-or-skipped index first
    t.free(1)
    assert t.alloc(e, 1) == 1
    assert t.alloc(e, 32) == 32
    assert t.alloc(e, 32) is None
    with pytest.raises(ValueError, match="block size"):
        t.alloc(e, 3)


@pytest.mark.parametrize("key", PLATFORM_KEYS)
def test_refs_of_a_vm_and_a_source(key: str) -> None:
    fmt = make_format(key, RemappingTable(64))
    a = fmt.alloc(Irte(1, 0, 0x40, DEV))
    b = fmt.alloc(Irte(2, 0, 0x41, OTHER))
    assert fmt.refs_where(owner_vm=1) == [a]
    assert fmt.refs_where(source=OTHER) == [b]
    assert fmt.alloc_at(a or 0, Irte(1, 0, 0x40, DEV)) is False  # taken
    fmt.free(a or 0)
    assert fmt.alloc_at(a or 0, Irte(1, 0, 0x40, DEV)) is True  # a migration destination takes it back


def test_unknown_platform() -> None:
    with pytest.raises(ValueError, match="unknown platform"):
        make_format("ppc", RemappingTable(64))
