"""x86 MSI address/data formats: the remappable format pvmsi hands out, and the compatibility format.

Follows the Intel Virtualization Technology for Directed I/O specification (VT-d), chapter 5 "Interrupt
Remapping": section 5.1.2.1 "Interrupt Requests in Compatibility Format", section 5.1.2.2 "Interrupt
Requests in Remappable Format" and section 5.1.5.2 "MSI and MSI-X Register Programming".  Linux spells the
same bits out in ``arch/x86/include/asm/msi.h`` (``x86_msi_addr_lo``: ``dmar_index_0_14``, ``dmar_format``,
``dmar_subhandle_valid``, ``dmar_index_15``).

Remappable format (what :func:`compose` builds and :func:`parse` accepts)::

    address[63:32] = 0
    address[31:20] = 0xFEE           interrupt address window
    address[19:5]  = handle[14:0]
    address[4]     = 1               Interrupt Format: remappable
    address[3]     = SHV             sub-handle valid
    address[2]     = handle[15]
    address[1:0]   = don't care      (ignored)
    data[31:16]    = 0               reserved, must be zero
    data[15:0]     = sub-handle      (meaningful when SHV = 1)

    interrupt index = handle + sub-handle   if SHV = 1
                    = handle                if SHV = 0

:func:`compose` always sets SHV.  For multi-message MSI the IRTE block is allocated power-of-two aligned, the
pair is composed with the block's first index as handle and sub-handle 0, and the device replaces the low
``log2(count)`` bits of data with the vector number ``i``; the write then selects entry ``handle + i``.

Compatibility format (today's un-remapped MSI; what a guest programs under emulation)::

    address[31:20] = 0xFEE, address[19:12] = destination APIC id, address[4] = 0 (format),
    address[3] = redirection hint, address[2] = destination mode
    data[7:0] = vector, data[10:8] = delivery mode, data[15] = trigger mode

With interrupt remapping enforced (compatibility format blocked, VT-d GSTS.CFIS clear) the IOMMU blocks every
compatibility-format request: fault reason 25h.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fault import FaultReason

INTERRUPT_WINDOW = 0xFEE00000
"""Base of the x86 interrupt address window (0xFEE00000..0xFEEFFFFF)."""
WINDOW_MASK = 0xFFF00000
FORMAT_REMAPPABLE = 1 << 4
SUBHANDLE_VALID = 1 << 3
HANDLE_BIT15 = 1 << 2
HANDLE_LIMIT = 1 << 16


class MessageFormatError(ValueError):
    """An address/data pair that is not a valid remappable-format interrupt request."""

    def __init__(self, reason: FaultReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def compose(irte_index: int, subhandle: int = 0) -> tuple[int, int]:
    """The remappable-format (address, data) naming interrupt-remapping entry ``irte_index`` (SHV set)."""
    if not 0 <= irte_index < HANDLE_LIMIT:
        raise ValueError(f"IRTE index {irte_index} is not a 16-bit handle")
    if not 0 <= subhandle < HANDLE_LIMIT:
        raise ValueError(f"sub-handle {subhandle} is not a 16-bit value")
    address = (
        INTERRUPT_WINDOW | FORMAT_REMAPPABLE | SUBHANDLE_VALID | (irte_index & 0x7FFF) << 5 | (irte_index >> 15) << 2
    )
    return address, subhandle


def is_interrupt_address(address: int) -> bool:
    """Whether a memory write to ``address`` is an interrupt request (it hits 0xFEE00000..0xFEEFFFFF)."""
    return address & ~0x000FFFFF == INTERRUPT_WINDOW


def parse(address: int, data: int) -> int:
    """The interrupt-remapping index a remappable-format write selects.

    Raises :class:`MessageFormatError` with the fault reason: the address is not in the interrupt window,
    the request is in compatibility format, or a reserved data bit (31:16) is set.  The index may exceed the
    table: the IOMMU checks that (fault reason 21h).
    """
    if not is_interrupt_address(address):
        raise MessageFormatError(FaultReason.NOT_INTERRUPT_ADDRESS, f"address {address:#x} is not 0xFEExxxxx")
    if not address & FORMAT_REMAPPABLE:
        raise MessageFormatError(FaultReason.COMPATIBILITY_FORMAT, f"address {address:#x} has format bit 4 clear")
    if not 0 <= data <= 0xFFFFFFFF or data >> 16:
        raise MessageFormatError(FaultReason.RESERVED_BITS, f"data {data:#x} has reserved bits 31:16 set")
    handle = (address >> 5) & 0x7FFF | ((address >> 2) & 1) << 15
    if address & SUBHANDLE_VALID:
        return handle + (data & 0xFFFF)
    return handle


@dataclass(frozen=True, slots=True)
class CompatMessage:
    """A compatibility-format message: destination APIC id and vector (physical destination, fixed mode)."""

    dest_apic_id: int
    vector: int


def compose_compat(dest_apic_id: int, vector: int) -> tuple[int, int]:
    """The compatibility-format (address, data) a guest programs for ``vector`` on APIC ``dest_apic_id``."""
    if not 0 <= dest_apic_id <= 0xFF:
        raise ValueError(f"APIC id {dest_apic_id} is not an 8-bit value")
    if not 0 <= vector <= 0xFF:
        raise ValueError(f"vector {vector} is not an 8-bit value")
    return INTERRUPT_WINDOW | dest_apic_id << 12, vector


def parse_compat(address: int, data: int) -> CompatMessage | None:
    """The destination and vector of a compatibility-format pair, or ``None`` when it is not one.

    Only physical-destination, fixed-delivery, edge-triggered messages are accepted (what Linux programs).
    """
    if not is_interrupt_address(address) or address & (FORMAT_REMAPPABLE | HANDLE_BIT15 | SUBHANDLE_VALID):
        return None
    if not 0 <= data <= 0xFFFFFFFF or data & ~0xFF:
        return None
    return CompatMessage((address >> 12) & 0xFF, data & 0xFF)
