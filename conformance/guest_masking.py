"""How the guest masks a multi-message MSI block it rewrites itself (spec "Allocate, retarget and free",
GUEST-ALLOC-002; harness appendix, device model): every vector of the block, which on the harness is MASK of MSI
slot 0 (MASK of slot n > 0 masks vector n alone), not one vector nor none.

The check reads the device's Mask Bits as the guest's accesses left them (the emulator keeps the device's bits in
step with the guest's view), and the model's record of what the guest enabled and programmed.
"""

from __future__ import annotations

from typing import Any

from ..spec.constants import MsgKind
from ..spec.harness_constants import DeviceOp
from ..spec.kinds import kind_bit

#: The suite's hypervisor model (:class:`~.guest_host.HostModel`) and one device access it recorded (its
#: ``DeviceRecord``); :mod:`.guest_host` imports this module, so neither is imported here.
HostModel = Any
DeviceRecord = Any


def unmasked_vectors(hv: HostModel, key: tuple[int, int, int, int | None], vectors: int) -> list[int]:
    """The vectors of the first ``vectors`` of ``key``'s MSI block whose Mask Bit is clear."""
    pci = hv.svm.pci(key[0], key[1], key[2])
    if pci is None or pci.msi is None or not pci.msi.per_vector_mask:
        return []
    return [i for i in range(vectors) if not pci.msi.mask_bits >> i & 1]


def check_msi_rewrite(hv: HostModel, rec: DeviceRecord) -> None:
    """GUEST-ALLOC-002: a PROGRAM of an MSI capability the guest writes itself (MSI not claimed) while the block
    is enabled and holds a pair must find every vector of the block masked."""
    if rec.op is not DeviceOp.PROGRAM or rec.kind != MsgKind.MSI or rec.device[3] is not None:
        return
    if hv.claimed_kinds(rec.device) & kind_bit(MsgKind.MSI) or not hv.enabled.get((rec.device, rec.kind), False):
        return
    held = hv.programmed.get((rec.device, rec.kind, 0))
    if held is None or not held[0]:
        return
    vectors = max(1, held[2])
    open_ = unmasked_vectors(hv, rec.device, vectors)
    if open_:
        hv.violate(
            "GUEST-ALLOC-002",
            f"rewrote the pair of its enabled {vectors}-vector MSI block with vector(s) {open_} unmasked "
            f"(MASK of MSI slot 0 masks the whole block)",
        )
