"""Requirements of the section Reset, FLR, hot-unplug and migration that say what a device holds when a claim ends
(release, reset), after a function-level reset, and after a hot-unplug (spec "Reset, FLR, hot-unplug and
migration", sections "Release", "Function-level reset", "Hot-unplug")."""

from __future__ import annotations

from .model import Level, Requirement, req

REQUIREMENTS: tuple[Requirement, ...] = (
    req(
        "HV-RELEASE-001",
        Level.MUST,
        "lifecycle",
        "When a claim of MSI-X ends (DEVICE_RELEASE, RESET, a VM reset), the hypervisor MUST, before the call or "
        "event completes, put the device's MSI-X table as a reset leaves it: every entry's Mask Bit set, its "
        "Message Address and Message Data zero, MSI-X Enable and Function Mask clear; the emulated table and "
        "Message Control the guest sees afterwards hold the same.",
    ),
    req(
        "HV-RELEASE-002",
        Level.MUST,
        "lifecycle",
        "After a claim ends, the hypervisor MUST emulate the released MSI and MSI-X from that state as for a device "
        "never claimed: a pair the guest then writes through emulation and enables delivers to the vCPU and vector "
        "it names.",
    ),
    req(
        "HV-FLR-002",
        Level.MUST_NOT,
        "lifecycle",
        "After a function-level reset of a device with claimed MSI-X, the hypervisor MUST NOT write into an MSI-X "
        "table entry any pair but the one in force for the message allocated for that entry, MUST NOT write an "
        "entry that holds no message (it keeps what the reset left: masked, address and data zero), and MUST NOT "
        "write the device's IMS.",
    ),
    req(
        "HV-UNPLUG-002",
        Level.MUST,
        "lifecycle",
        "Hot-unplug of a PCI function MUST end the claims of its sub-devices as HV-UNPLUG-001 says for the function, "
        "and MUST give back to the VM every vector and every remapping entry the function and its sub-devices held, "
        "entries kept for their slots (HV-QUOTA-004) included: afterwards DEVICE_QUERY of another device reports "
        "the vm_messages_available it reported before they were allocated.",
    ),
    req(
        "HV-UNPLUG-003",
        Level.MUST,
        "lifecycle",
        "When a claimed device is hot-unplugged the hypervisor MUST queue one DEVICE_REMOVED event naming it, and "
        "one naming each of its sub-devices whose claim ended, after their claims have ended (handle and reason "
        "zero); a device that was not claimed MUST NOT raise one.",
    ),
)
