"""Requirements of the section Device control."""

from __future__ import annotations

from .model import Level, Requirement, req

REQUIREMENTS: tuple[Requirement, ...] = (
    req(
        "HV-DEV-001",
        Level.MUST,
        "device",
        "The hypervisor MUST identify a device by the segment, bus and devfn the guest sees, never by host "
        "numbers, and MUST fail with UNKNOWN_DEVICE a device identity that is not assigned to the calling VM.",
    ),
    req(
        "HV-DEV-002",
        Level.MUST,
        "device",
        "The hypervisor MUST fail with INVALID_PARAMETER a device identity whose subdevice_id is non-zero "
        "without PVMSI_DEVID_SUBDEVICE, or has bits above bit 19 set.",
    ),
    req(
        "HV-DEV-003",
        Level.MUST,
        "device",
        "The hypervisor MUST fail with UNKNOWN_DEVICE a sub-device identity that names no sub-device of a "
        "device assigned to the VM.",
    ),
    req(
        "HV-DEV-004",
        Level.MUST,
        "device",
        "DEVICE_QUERY MUST report the kinds the device supports, its MSI vector count, MSI-X table size and IMS "
        "slot count as the guest sees them, the kinds claimed, the vectors allocated and the device's quota.",
    ),
    req(
        "HV-DEV-005",
        Level.MUST,
        "device",
        "The hypervisor MUST set PVMSI_DEV_ISOLATED for a device only when the platform validates the requester "
        "id of every message the device writes (HV-SEC-002); the flag says nothing about sub-devices that share "
        "that requester id (PVMSI_DEV_SHARED_SOURCE).",
    ),
    req(
        "HV-DEV-006",
        Level.MUST,
        "device",
        "The hypervisor MUST fail DEVICE_CLAIM with INVALID_PARAMETER when kinds is empty or names a kind the "
        "device does not support.",
    ),
    req(
        "HV-DEV-007",
        Level.MUST,
        "device",
        "The hypervisor MUST fail DEVICE_CLAIM with WRONG_STATE when the device is already claimed, or when a "
        "kind to claim is enabled through emulation (MSI Enable or MSI-X Enable set).",
    ),
    req(
        "HV-DEV-008",
        Level.MUST,
        "device",
        "The hypervisor MUST fail DEVICE_CLAIM with NO_RESOURCES when the VM already holds max_claimed_devices "
        "claimed devices.",
    ),
    req(
        "HV-DEV-009",
        Level.MUST,
        "device",
        "After a successful DEVICE_CLAIM the hypervisor MUST stop emulating the claimed kinds, and for MSIX MUST "
        "let the guest's accesses to the MSI-X table and PBA reach the device without an exit. A claimed kind is "
        "disabled (HV-DEV-006), so no emulated vector of it is live and the hypervisor holds no remapping entry "
        "for one (HV-QUOTA-002): it released each when the vector stopped being live, and MUST then have masked "
        "that MSI-X entry and cleared the pair of its own it held, so the claimed table holds no pair naming a "
        "released entry: every entry the emulator programmed is masked with address and data zero.",
    ),
    req(
        "HV-DEV-010",
        Level.MUST,
        "device",
        "The hypervisor MUST fail DEVICE_RELEASE with WRONG_STATE for a device that is not claimed.",
    ),
    req(
        "HV-DEV-011",
        Level.MUST,
        "device",
        "DEVICE_RELEASE MUST free every message of the device, revoke their remapping entries, return the "
        "number of vectors freed, and resume emulating the MSI capability and trapping and emulating the MSI-X "
        "table.",
    ),
    req(
        "HV-DEV-012",
        Level.MUST,
        "device",
        "The hypervisor MUST treat a sub-device as a device of its own for claiming, quotas and ownership, "
        "independent of its parent.",
    ),
    req(
        "GUEST-DEV-001",
        Level.MUST,
        "device",
        "The guest MUST disable MSI and MSI-X through the emulated capability before it claims those kinds.",
    ),
    req(
        "GUEST-DEV-002",
        Level.SHOULD,
        "device",
        "The guest SHOULD query a device before claiming it, and SHOULD name in its one DEVICE_CLAIM every kind, "
        "among those the device supports and pvmsi negotiated, that it will ever use through pvmsi on the device: "
        "a claimed device is not claimed again (HV-DEV-007), so a kind left out stays emulated (IMS: unusable) "
        "until the guest releases the device and every message on it. Claiming a kind it then never uses costs "
        "nothing but the emulation of that kind.",
    ),
    req(
        "GUEST-DEV-003",
        Level.SHOULD,
        "device",
        "Before it releases a device, the guest SHOULD free every message of the device and leave each kind it "
        "used quiet: MSI and MSI-X disabled (MSI Enable, MSI-X Enable clear), and every IMS slot it wrote masked "
        "(IMS has no kind-wide enable: the harness's DISABLE of IMS is a no-op, and none is needed).",
    ),
    req(
        "GUEST-DEV-004",
        Level.SHOULD_NOT,
        "device",
        "The guest SHOULD NOT use a device's messages when PVMSI_DEV_ISOLATED is clear and it cannot trust the device.",
    ),
)
