"""Requirements of the section Reset, FLR, hot-unplug and migration."""

from __future__ import annotations

from .model import Level, Requirement, req

REQUIREMENTS: tuple[Requirement, ...] = (
    req(
        "HV-RESET-001",
        Level.MUST,
        "lifecycle",
        "The RESET call MUST free every message of the VM, revoke their remapping entries, release every claimed "
        "device (resuming emulation), return the number of vectors freed and move the VM to OPEN.",
    ),
    req("HV-RESET-002", Level.MUST, "lifecycle", "A reset of the VM MUST have the effect of the RESET call."),
    req(
        "HV-RESET-003",
        Level.MUST,
        "lifecycle",
        "RESET MUST succeed in every state; in OPEN it frees nothing and returns zero.",
    ),
    req(
        "HV-FLR-001",
        Level.MUST,
        "lifecycle",
        "A function-level reset of a claimed device MUST keep its claim, its handles and their remapping entries.",
    ),
    req(
        "GUEST-FLR-001",
        Level.MUST,
        "lifecycle",
        "After a function-level reset of a claimed device the guest MUST write the pairs of its MSI-X and IMS "
        "messages into the device again before it re-enables them (a claimed MSI capability the hypervisor "
        "restores, HV-EMU-007).",
    ),
    req(
        "HV-UNPLUG-001",
        Level.MUST,
        "lifecycle",
        "When a device is hot-unplugged the hypervisor MUST free its messages, revoke their remapping entries "
        "and end its claim; afterwards its handles MUST be answered with UNKNOWN_HANDLE and its identity with "
        "UNKNOWN_DEVICE.",
    ),
    req(
        "GUEST-UNPLUG-001",
        Level.MUST,
        "lifecycle",
        "On hot-unplug the guest MUST drop every handle of the device without freeing it.",
    ),
    req(
        "HV-MIG-001",
        Level.MUST,
        "lifecycle",
        "Live migration MUST preserve the negotiated features, the claims, every handle with its target, the "
        "event queue and the notification target of the VM; the address/data pairs MAY change.",
    ),
    req(
        "HV-MIG-002",
        Level.MUST,
        "lifecycle",
        "Before the VM runs on the destination, the destination MUST program remapping so that every message "
        "delivers to its target through the pair the guest will be given, and MUST queue a REFETCH event. A "
        "message whose pair it kept MUST keep delivering; the old pair of a message whose pair changed MUST NOT "
        "deliver anywhere but to that message's target.",
    ),
    req(
        "HV-MIG-003",
        Level.MUST_NOT,
        "lifecycle",
        "Migration MUST NOT require the guest to re-negotiate, re-claim or re-allocate.",
    ),
    req(
        "HV-MIG-004",
        Level.MUST,
        "lifecycle",
        "The first MSG_ACTIVATE of a message after a migration that changed its pair MUST return the new pair with "
        "REWRITE and MUST inject one interrupt at the message's target (possibly spurious: one raised meanwhile "
        "through the old pair may have been blocked).",
    ),
    req(
        "HV-MIG-005",
        Level.MUST,
        "lifecycle",
        "A migration destination MUST offer at least the features negotiated on the source; when any GET_INFO "
        "limit differs from the source's it MUST queue a LIMITS_CHANGED event.",
    ),
)
