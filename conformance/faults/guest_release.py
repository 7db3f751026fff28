"""Faulty guests of how a guest hands a device back (GUEST-DEV-003, per kind): each a subclass of the reference
guest core overriding its public :meth:`~pvmsi.reference.guest.core.GuestCore.shutdown`."""

from __future__ import annotations

from ...reference.guest.actions import GuestDevice
from ...reference.guest.core import GuestCore, Op
from ...spec.constants import MsgKind
from .guests import fault


@fault(
    "releases-ims-unmasked",
    "GUEST-DEV-003",
    "before DEVICE_RELEASE disables MSI-X and frees every message, but leaves the IMS slots it wrote unmasked",
)
class _ReleasesImsUnmasked(GuestCore):
    def shutdown(self, dev: GuestDevice) -> Op:
        held = self.messages.get(dev, {})
        ims = [m for (k, _), m in held.items() if k is MsgKind.IMS]
        for kind in sorted({k for k, _ in held if k is not MsgKind.IMS}, key=int):
            yield from self.disable(dev, kind)
        yield from self.free(dev, ims)
        self.drop_freed(dev, MsgKind.IMS, ims)
        return (yield from self.release(dev))
