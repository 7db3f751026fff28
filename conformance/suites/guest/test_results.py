"""What a guest under test reports for each command (harness appendix, guest_result): SUCCESS for a BOOT that falls
back, the failing call's status as returned, ``done`` in vectors; a reboot starts afresh (GUEST-STAT-002)."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import ABSENT, MLX5, MSI_DEV, GuestSession
from pvmsi.conformance.toolkit import check, status_name
from pvmsi.spec.constants import FunctionNumber, MsgKind, Status
from pvmsi.spec.iut import GuestMode, GuestResult

requirement = pytest.mark.requirement


def _done(r: GuestResult, want: int, what: str) -> None:
    check(r.status == Status.SUCCESS, "GUEST-STAT-002", f"{what} -> SUCCESS", status_name(r.status))
    check(r.done == want, "GUEST-STAT-002", f"{what}: done = {want} vectors", str(r.done))


@requirement("GUEST-STAT-002", "GUEST-DISC-002", "GUEST-NEG-003")
@pytest.mark.parametrize(
    ("knobs", "rid"),
    [
        ({"present": False}, "GUEST-DISC-002"),
        ({"version": (2, 0)}, "GUEST-DISC-002"),
        ({"negotiate_status": int(Status.FEATURES_REFUSED)}, "GUEST-NEG-003"),
    ],
    ids=["absent", "major-2", "refused"],
)
def test_a_boot_that_falls_back_reports_success(guest: GuestSession, knobs: dict[str, object], rid: str) -> None:
    """pvmsi absent, of major version 2, or NEGOTIATE refused: the BOOT answers SUCCESS in mode EMULATED, done 0 (a
    fallback is the guest working as the spec requires, not an error of the command)."""
    guest.host(**knobs)
    r = guest.boot()
    guest.fell_back(r, rid)
    check(r.done == 0, "GUEST-STAT-002", "BOOT: done 0", str(r.done))


@requirement("GUEST-STAT-002")
def test_done_counts_vectors(guest: GuestSession) -> None:
    """An 8-vector MSI block counts 8 in ENABLE, RETARGET, FLR and DISABLE; 6 MSI-X entries count 6 in ENABLE,
    RETARGET and RELEASE; BOOT counts 0."""
    _done(guest.boot(), 0, "BOOT")
    _done(guest.enable(MSI_DEV, MsgKind.MSI, 8, vcpu=3, vector=0x80), 8, "ENABLE of an 8-vector MSI block")
    _done(guest.enable(MLX5, MsgKind.MSIX, 6), 6, "ENABLE of 6 MSI-X entries")
    _done(guest.retarget(MSI_DEV, MsgKind.MSI, 2), 8, "RETARGET of the MSI block")
    _done(guest.retarget(MLX5, MsgKind.MSIX, 2), 6, "RETARGET of the MSI-X entries")
    _done(guest.flr(MSI_DEV), 8, "FLR of the MSI device")
    _done(guest.disable(MSI_DEV, MsgKind.MSI), 8, "DISABLE of the MSI block")
    _done(guest.release(MLX5), 6, "RELEASE of the MSI-X device")


@requirement("GUEST-STAT-002", "GUEST-BATCH-002")
def test_a_partly_failed_enable_reports_the_status(guest: GuestSession) -> None:
    """The device quota is 5: MSG_ALLOC of 8 stops at entry 5 with NO_RESOURCES. The ENABLE reports NO_RESOURCES,
    and done counts the vectors it left enabled and working (0 when it freed entries 0..4)."""
    guest.host(device_quota=5)
    guest.boot()
    r = guest.enable(MLX5, MsgKind.MSIX, 8)
    guest.clean("GUEST-BATCH-002")
    check(r.status == Status.NO_RESOURCES, "GUEST-STAT-002", "ENABLE -> NO_RESOURCES", status_name(r.status))
    kept = sum(m.count for m in guest.hv.live().values() if m.kind is MsgKind.MSIX and m.active)
    check(r.done == kept, "GUEST-STAT-002", f"done = {kept} (the vectors kept)", str(r.done))
    check(r.mode is GuestMode.PVMSI, "GUEST-STAT-002", "still mode PVMSI", r.mode.name)


@requirement("GUEST-DISC-001", "GUEST-NEG-005", "GUEST-ALLOC-004")
def test_a_reboot_starts_afresh(guest: GuestSession) -> None:
    """BOOT, ENABLE, then BOOT again (a reboot into a fresh VM): the guest discovers and negotiates again, claims
    again and names no handle of the boot before; its messages deliver."""
    guest.boot()
    guest.enable(MLX5, MsgKind.MSIX, 4)
    r = guest.boot()
    guest.ok(r, "GUEST-DISC-001", "second BOOT")
    check(guest.fns()[:1] == ["VERSION"], "GUEST-DISC-001", "VERSION first after the reboot", ", ".join(guest.fns()))
    check(len(guest.calls(FunctionNumber.NEGOTIATE)) == 1, "GUEST-NEG-005", "one NEGOTIATE", ", ".join(guest.fns()))
    guest.ok(guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=2), "GUEST-ALLOC-004", "ENABLE after the reboot")
    guest.clean("GUEST-DISC-001", "GUEST-NEG-005", "GUEST-ALLOC-004")
    guest.delivers(MLX5, MsgKind.MSIX, 4, "GUEST-ALLOC-004", vcpu=2)


@requirement("GUEST-STAT-002", "GUEST-CONV-001")
def test_a_command_for_a_device_the_vm_lacks(guest: GuestSession) -> None:
    """ENABLE on a device the VM does not have: DEVICE_QUERY answers UNKNOWN_DEVICE, and the ENABLE reports
    UNKNOWN_DEVICE with done 0 (a pvmsi status, not a harness error: the guest cannot know the device is absent
    before it asks)."""
    guest.boot()
    r = guest.enable(ABSENT, MsgKind.MSIX, 2)
    guest.clean("GUEST-CONV-001")
    check(r.status == Status.UNKNOWN_DEVICE, "GUEST-STAT-002", "ENABLE -> UNKNOWN_DEVICE", status_name(r.status))
    check(r.done == 0, "GUEST-STAT-002", "done 0", str(r.done))
