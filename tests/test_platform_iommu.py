"""The IOMMU: remapping with source validation, faults counted by reason."""

from __future__ import annotations

from pvmsi.reference.platform.fault import FaultReason
from pvmsi.reference.platform.iommu import Delivery, Fault, Iommu
from pvmsi.reference.platform.msi_format import compose, compose_compat
from pvmsi.reference.platform.remap import Irte, RemappingTable
from pvmsi.reference.platform.requester import Requester

DEV = Requester(0, 0x0310)
SUB = Requester(0, 0x0310, pasid=7)


def _iommu(entries: int = 65536) -> Iommu:
    return Iommu(RemappingTable(entries))


def test_delivers_to_the_entry_target() -> None:
    iommu = _iommu()
    index = iommu.table.alloc(Irte(owner_vm=3, dest_vcpu=1, vector=0x41, source=DEV, posted=True))
    assert index is not None
    assert iommu.translate(DEV, *compose(index)) == Delivery(3, 1, 0x41, index, True)
    assert iommu.delivery_count == 1
    assert iommu.fault_count == 0


def _reason(result: Delivery | Fault) -> FaultReason:
    assert isinstance(result, Fault)
    return result.reason


def test_source_validation_requester_id_and_segment() -> None:
    iommu = _iommu()
    index = iommu.table.alloc(Irte(1, 0, 0x40, DEV))
    assert index is not None
    pair = compose(index)
    assert _reason(iommu.translate(Requester(0, 0x0311), *pair)) is FaultReason.SOURCE_ID_MISMATCH
    assert _reason(iommu.translate(Requester(1, 0x0310), *pair)) is FaultReason.SOURCE_ID_MISMATCH
    # a sub-device shares its parent's requester id: the IOMMU cannot tell them apart (HV-SEC-002)
    assert isinstance(iommu.translate(SUB, *pair), Delivery)


def test_the_pasid_of_an_interrupt_write_is_not_validated() -> None:
    """No IOMMU checks a PASID on an interrupt: any PASID (or none) from the entry's requester id delivers."""
    iommu = _iommu()
    index = iommu.table.alloc(Irte(1, 0, 0x40, DEV))
    assert index is not None
    pair = compose(index)
    for requester in (SUB, DEV, Requester(0, 0x0310, pasid=8)):
        assert isinstance(iommu.translate(requester, *pair), Delivery)
    assert _reason(iommu.translate(Requester(0, 0x0318, pasid=SUB.pasid), *pair)) is FaultReason.SOURCE_ID_MISMATCH


def test_absent_not_present_freed_and_out_of_range_entries_fault() -> None:
    iommu = _iommu(1024)
    assert _reason(iommu.translate(DEV, *compose(5))) is FaultReason.NOT_PRESENT
    index = iommu.table.alloc(Irte(1, 0, 0x40, DEV))
    assert index is not None
    iommu.table.update(index, present=False)
    assert _reason(iommu.translate(DEV, *compose(index))) is FaultReason.NOT_PRESENT
    iommu.table.update(index, present=True)
    assert isinstance(iommu.translate(DEV, *compose(index)), Delivery)
    iommu.table.free(index)
    assert _reason(iommu.translate(DEV, *compose(index))) is FaultReason.NOT_PRESENT
    fault = iommu.translate(DEV, *compose(2000))
    assert isinstance(fault, Fault)
    assert fault.reason is FaultReason.INDEX_OUT_OF_RANGE
    assert fault.irte_index == 2000


def test_format_faults_and_counts_by_reason() -> None:
    iommu = _iommu()
    assert _reason(iommu.translate(DEV, *compose_compat(0, 0x40))) is FaultReason.COMPATIBILITY_FORMAT
    assert _reason(iommu.translate(DEV, 0x1000, 0)) is FaultReason.NOT_INTERRUPT_ADDRESS
    assert _reason(iommu.translate(DEV, 0xFEE00018, 0x10000)) is FaultReason.RESERVED_BITS
    assert _reason(iommu.translate(DEV, *compose(9))) is FaultReason.NOT_PRESENT
    assert _reason(iommu.translate(DEV, *compose(9))) is FaultReason.NOT_PRESENT
    assert iommu.faults == {
        FaultReason.COMPATIBILITY_FORMAT: 1,
        FaultReason.NOT_INTERRUPT_ADDRESS: 1,
        FaultReason.RESERVED_BITS: 1,
        FaultReason.NOT_PRESENT: 2,
    }
    assert iommu.fault_count == 5
    assert len(iommu.fault_log) == 5
    assert iommu.fault_log[0].requester == DEV


def test_vtd_fault_codes() -> None:
    assert FaultReason.SOURCE_ID_MISMATCH.vtd_code == 0x26
    assert FaultReason.COMPATIBILITY_FORMAT.vtd_code == 0x25
    assert {reason for reason in FaultReason if reason.vtd_code is None} == {FaultReason.NOT_INTERRUPT_ADDRESS}
