"""Why the IOMMU blocked an interrupt message (the platform's fault reasons).

The VT-d fault reason codes quoted in :attr:`FaultReason.vtd_code` come from the Intel VT-d specification,
"Interrupt Remapping Fault Conditions" (fault reasons 20h..26h).  There is no PASID reason: no IOMMU checks
a PASID on an interrupt write (VT-d validates the requester id through the IRTE's SVT/SQ/SID fields, AMD-Vi
and the GIC ITS the DeviceID), so neither does the model (spec HV-SEC-002).
"""

from __future__ import annotations

from enum import StrEnum


class FaultReason(StrEnum):
    """A blocked message, by cause."""

    NOT_INTERRUPT_ADDRESS = "not_interrupt_address"
    RESERVED_BITS = "reserved_bits"
    COMPATIBILITY_FORMAT = "compatibility_format"
    INDEX_OUT_OF_RANGE = "index_out_of_range"
    NOT_PRESENT = "not_present"
    SOURCE_ID_MISMATCH = "source_id_mismatch"

    @property
    def vtd_code(self) -> int | None:
        """The VT-d fault reason code, where VT-d has one."""
        return _VTD_CODES.get(self)


_VTD_CODES: dict[FaultReason, int] = {
    FaultReason.RESERVED_BITS: 0x20,
    FaultReason.INDEX_OUT_OF_RANGE: 0x21,
    FaultReason.NOT_PRESENT: 0x22,
    FaultReason.COMPATIBILITY_FORMAT: 0x25,
    FaultReason.SOURCE_ID_MISMATCH: 0x26,
}
