"""FLR and hot-unplug as the guest handles them (spec "Reset, FLR, hot-unplug and migration")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import IDXD_SUB, MLX5, MSI_DEV, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import FunctionNumber, MsgKind

requirement = pytest.mark.requirement


@requirement("GUEST-FLR-001")
def test_rewrites_pairs_after_flr(guest: GuestSession) -> None:
    """After an FLR the device holds no pair: the guest writes each again before re-enabling, and all deliver."""
    guest.boot()
    guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40)
    guest.enable(MLX5, MsgKind.IMS, 2, vcpu=2, vector=0x60, first_slot=6)
    guest.enable(MSI_DEV, MsgKind.MSI, 4, vcpu=3, vector=0x80)
    for dev in (MLX5, MSI_DEV):
        guest.ok(guest.flr(dev), "GUEST-FLR-001", f"FLR of {dev}")
    guest.clean("GUEST-FLR-001")
    guest.delivers(MLX5, MsgKind.MSIX, 4, "GUEST-FLR-001", vcpu=1, vector=0x40)
    guest.delivers(MLX5, MsgKind.IMS, 2, "GUEST-FLR-001", vcpu=2, vector=0x60, first=6)
    guest.delivers(MSI_DEV, MsgKind.MSI, 4, "GUEST-FLR-001", vcpu=3, vector=0x80)


@requirement("GUEST-UNPLUG-001", "GUEST-ALLOC-004")
def test_drops_handles_on_unplug(guest: GuestSession) -> None:
    """The device is hot-unplugged: the guest frees nothing and releases nothing for it, and never names its handles
    again; its other devices keep working."""
    guest.boot()
    guest.enable(MLX5, MsgKind.MSIX, 4)
    guest.enable(MLX5, MsgKind.IMS, 2, first_slot=8)
    guest.enable(IDXD_SUB, MsgKind.IMS, 2, vcpu=2, vector=0x90)
    before = len(guest.calls())
    guest.unplug(MLX5)
    guest.clean("GUEST-UNPLUG-001")
    calls = guest.calls()[before:]
    check(not calls, "GUEST-UNPLUG-001", "no call for the unplugged device", ", ".join(guest.fns()[before:]))
    guest.retarget(MLX5, MsgKind.MSIX, 2)
    guest.disable(MLX5, MsgKind.MSIX)
    guest.clean("GUEST-UNPLUG-001", "GUEST-ALLOC-004")
    frees = [c for c in guest.calls(FunctionNumber.MSG_FREE) if c.device and c.device[:3] == (0, 0, 0x08)]
    check(not frees, "GUEST-UNPLUG-001", "no MSG_FREE for the unplugged device", str(len(frees)))
    guest.delivers(IDXD_SUB, MsgKind.IMS, 2, "GUEST-ALLOC-004", vcpu=2, vector=0x90)
