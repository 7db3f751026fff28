"""The IOMMU's interrupt-remapping unit: turns a device's interrupt write into a delivery or a fault.

Remapping is enforced (VT-d: interrupt remapping enabled, compatibility format blocked), so every interrupt
request must be in remappable format, name a present entry and come from the entry's source: the segment and
16-bit requester id must match (VT-d IRTE SVT=01b, SQ=00b, SID = bus:devfn, as Linux's ``set_msi_sid()``
programs it; AMD-Vi and the GIC ITS select the table by DeviceID).  A PASID prefix on the write is not looked
at: no IOMMU validates interrupts by PASID (spec HV-SEC-002).  Anything else is blocked and counted by
:class:`~.fault.FaultReason`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .fault import FaultReason
from .msi_format import MessageFormatError, parse
from .remap import RemappingTable
from .requester import Requester

if TYPE_CHECKING:
    from .formats.base import MsiFormat


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message the IOMMU let through: inject ``vector`` into vCPU ``vcpu`` of VM ``vm``."""

    vm: int
    vcpu: int
    vector: int
    irte_index: int
    posted: bool = False


@dataclass(frozen=True, slots=True)
class Fault:
    """A message the IOMMU blocked, and why (``irte_index`` when the request named one)."""

    reason: FaultReason
    requester: Requester
    address: int
    data: int
    irte_index: int | None = None


class Iommu:
    """Interrupt remapping with source validation over one :class:`~.remap.RemappingTable`."""

    def __init__(self, table: RemappingTable | None = None) -> None:
        self.table = table if table is not None else RemappingTable()
        self._faults: Counter[FaultReason] = Counter()
        self._deliveries = 0
        self.fault_log: list[Fault] = []
        self.fault_log_limit = 1024
        #: Writes blocked by an allocated entry that is not present (a reserved or deactivated message, VT-d FPD /
        #: AMD-Vi SupIOPF): not recorded as faults (HV-ACT-006).
        self.suppressed = 0
        #: The platform's message format (:mod:`.formats`), set by the platform; None or VT-d: the table above.
        self.format: MsiFormat | None = None

    @property
    def faults(self) -> dict[FaultReason, int]:
        """Blocked messages so far, by reason (only reasons that occurred)."""
        return dict(self._faults)

    @property
    def fault_count(self) -> int:
        """Blocked messages so far, all reasons."""
        return sum(self._faults.values())

    @property
    def delivery_count(self) -> int:
        """Messages let through so far."""
        return self._deliveries

    def translate(self, requester: Requester, address: int, data: int) -> Delivery | Fault:
        """Remap one interrupt write from ``requester``: a present entry (HV-FREE-002), from its source
        (:meth:`check_source`), delivered to the entry's VM, vCPU and vector (HV-SEC-001).  A write in the
        platform's message format (:attr:`format`) is resolved by that format (HV-FMT-002); any other goes to the
        remappable-format table (VT-d, and the model's emulated MSI path on every platform)."""
        fmt = self.format
        if fmt is not None and fmt.key != "vtd" and fmt.claims(address):
            found = fmt.resolve(requester, address, data)
            if isinstance(found, FaultReason):
                return self._fault(found, requester, address, data, None)
            index, hit = found
            if hit is None or not hit.present:
                return self._fault(FaultReason.NOT_PRESENT, requester, address, data, index, hit is not None)
            if fmt.per_message_entries:  # IMSIC: the device context's MSI page table already is the check
                refused = self.check_source(hit.source, requester)
                if refused is not None:
                    return self._fault(refused, requester, address, data, index)
            self._deliveries += 1
            return Delivery(hit.owner_vm, hit.dest_vcpu, hit.vector, index, hit.posted)
        try:
            index = parse(address, data)
        except MessageFormatError as error:
            return self._fault(error.reason, requester, address, data, None)
        if index >= self.table.capacity:
            return self._fault(FaultReason.INDEX_OUT_OF_RANGE, requester, address, data, index)
        entry = self.table.get(index)
        if entry is None or not entry.present:
            return self._fault(FaultReason.NOT_PRESENT, requester, address, data, index, entry is not None)
        refused = self.check_source(entry.source, requester)
        if refused is not None:
            return self._fault(refused, requester, address, data, index)
        self._deliveries += 1
        return Delivery(entry.owner_vm, entry.dest_vcpu, entry.vector, index, entry.posted)

    def check_source(self, source: Requester, requester: Requester) -> FaultReason | None:
        """Source validation: a write is delivered only from the entry's source, its segment and 16-bit requester
        id (SOURCE_ID_MISMATCH otherwise); the write's PASID, if any, plays no part (spec HV-SEC-002, HV-DEV-005)."""
        if source.segment != requester.segment or source.rid != requester.rid:
            return FaultReason.SOURCE_ID_MISMATCH
        return None

    def _fault(
        self,
        reason: FaultReason,
        requester: Requester,
        address: int,
        data: int,
        index: int | None,
        suppress: bool = False,
    ) -> Fault:
        fault = Fault(reason, requester, address, data, index)
        if suppress:  # fault processing disabled on the entry (HV-ACT-006)
            self.suppressed += 1
            return fault
        self._faults[reason] += 1
        if len(self.fault_log) < self.fault_log_limit:
            self.fault_log.append(fault)
        return fault
