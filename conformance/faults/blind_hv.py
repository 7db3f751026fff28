"""Faults that survived a blind measurement of the hypervisor suite (45 realistic faulty hypervisors written
without reading the suite or the other faults; 41 caught): a required feature checked for the message kinds only,
a quota check that forgets an MSI block's size, a refused entry charged to the quotas when the remapping share
(not the quota) is full, and an AMD-Vi pair that keeps 8 bits of its table index.

Each is a mistake a real implementation makes; each breaks the one requirement it names.
"""

from __future__ import annotations

from ...reference.hypervisor.call import Call
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.vmstate import Claim
from ...reference.platform.remap import RemappingTable
from ...reference.system import PlatformRemap, ReferenceSystem
from ...spec.constants import Feature
from ...spec.records import AllocEntry
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined

KIND_FEATURES = int(Feature.MSI | Feature.MSIX | Feature.IMS)


@faults.add(
    "required-kinds-only",
    "HV-NEG-004",
    "NEGOTIATE checks only the message-kind bits of features_required: a required SUBDEVICE or POSTED is not enforced",
)
class RequiredKindsOnly(HypervisorCore):
    def missing_features(self, c: Call, features: int) -> int:
        return super().missing_features(c, features) & KIND_FEATURES


@faults.add(
    "quota-check-ignores-block-size",
    "HV-ALLOC-009",
    "the quota check tests the vectors held plus one, not plus the MSI block's n: a block overruns the VM's quota",
    "gic-its",  # where the VM's quota, not a shared remapping table, is what a block meets first
)
class QuotaCheckIgnoresBlockSize(HypervisorCore):
    def check_quota(self, c: Call, claim: Claim, count: int) -> None:
        super().check_quota(c, claim, 1)


@faults.add(
    "full-share-charges-quota",
    "HV-SEC-007",
    "an entry refused because the VM's remapping share is full (emulated vectors took it) is charged to the quotas",
    "vtd",
)
class FullShareChargesQuota(HypervisorCore):
    def alloc_remapping(self, c: Call, claim: Claim, e: AllocEntry, posted: bool) -> int | None:
        base = super().alloc_remapping(c, claim, e, posted)
        if base is None:  # the counters were bumped before the table was asked, and not rolled back
            claim.vectors += e.vector_count
            c.st.vectors += e.vector_count
        return base


class EightBitIndexRemap(PlatformRemap):
    """AMD-Vi's data[10:0] composed from the low 8 bits of the IRTE index (a u8 where the field is 11 bits)."""

    def compose(self, base: int) -> tuple[int, int]:
        if self.format.key == "amd-vi":
            base = (base & ~0xFFFF) | (base & 0xFF)
        return super().compose(base)


@faults.add(
    "amdvi-index-8-bits",
    "HV-ALLOC-007",
    "AMD-Vi: the pair's data carries 8 bits of the IRTE index, so a message past entry 255 delivers another's target",
    "amd-vi",
)
class AmdViIndexEightBits(ReferenceSystem):
    def make_remap(self, table: RemappingTable) -> PlatformRemap:
        return EightBitIndexRemap(table, self.platform.msi)
