"""Requirements of the section Events: the host-to-guest event channel (EVENT_CONFIG, EVENT_FETCH, EVENT_ACK),
and the revocation of a storming message, which the channel reports."""

from __future__ import annotations

from .model import Level, Requirement, req

REQUIREMENTS: tuple[Requirement, ...] = (
    req(
        "HV-EVT-001",
        Level.MUST,
        "events",
        "EVENT_CONFIG with ENABLE MUST register its vcpu and vector as the VM's notification target, both checked "
        "as a MSG_ALLOC target is (INVALID_PARAMETER otherwise, HV-ALLOC-006); without ENABLE, vcpu and vector "
        "MUST be zero (INVALID_PARAMETER otherwise) and the call MUST clear the target.",
    ),
    req(
        "HV-EVT-002",
        Level.MUST,
        "events",
        "Whenever the hypervisor queues an event for a VM with a notification target, it MUST inject the target's "
        "vector on the target vCPU as a virtual interrupt; without a target it MUST queue the event all the same.",
    ),
    req(
        "HV-EVT-003",
        Level.MUST,
        "events",
        "Every event queued for a VM MUST carry a sequence number one above that of the event queued before it "
        "for the VM (the first is 1); a sequence number MUST NOT be reused during the life of the VM, across "
        "RESET and live migration.",
    ),
    req(
        "HV-EVT-004",
        Level.MUST,
        "events",
        "EVENT_FETCH MUST write every unacknowledged event, in increasing sequence order, with count and "
        "next_seq, and return count; it MUST NOT remove or change any event: fetching again without an "
        "acknowledgement MUST return the same events.",
    ),
    req(
        "HV-EVT-005",
        Level.MUST,
        "events",
        "The queue MUST hold at most one event per (type, device, handle): queuing an event whose key is pending "
        "MUST remove the pending one and queue the new one with a new sequence number. It MUST hold at most "
        "PVMSI_MAX_EVENTS events: an event that would exceed it MUST replace the whole queue by one REFETCH event.",
    ),
    req(
        "HV-EVT-006",
        Level.MUST,
        "events",
        "EVENT_ACK MUST remove every event whose sequence number is at most seq and return how many remain; a seq "
        "at or above next_seq MUST fail with INVALID_PARAMETER and remove nothing; a seq below every pending event "
        "MUST succeed and remove nothing.",
    ),
    req(
        "HV-EVT-007",
        Level.MUST,
        "events",
        "RESET and a VM reset MUST empty the VM's queue and clear its notification target.",
    ),
    req(
        "HV-EVT-008",
        Level.MUST_NOT,
        "events",
        "The hypervisor MUST NOT make anything but the events depend on the guest fetching them: a VM that never "
        "registers a target, fetches or acknowledges keeps running, its queue bounded (HV-EVT-005); what it misses "
        "is what the events announce (a revoked message stays blocked, a changed pair does not deliver until "
        "the message is re-activated and the pair written).",
    ),
    req(
        "GUEST-EVT-001",
        Level.MUST,
        "events",
        "A guest MUST acknowledge an event only after it has acted on it (an unknown type: skipped), and MUST "
        "fetch again after an acknowledgement that leaves events pending.",
    ),
    req(
        "GUEST-EVT-002",
        Level.MUST,
        "events",
        "On REFETCH the guest MUST read GET_INFO again, re-activate every message it holds at its current target, "
        "and write every pair returned with REWRITE into its MSI-X entry or IMS slot before it relies on the "
        "message; it MUST NOT write any pair it was not given.",
    ),
    req(
        "HV-REVOKE-001",
        Level.MAY,
        "events",
        "The hypervisor MAY revoke a message that fires above a rate it states (an interrupt storm) or because of "
        "its host policy: it blocks the message's remapping entries and keeps the handle for the guest to free.",
    ),
    req(
        "HV-REVOKE-002",
        Level.MUST,
        "events",
        "When the hypervisor revokes a message it MUST queue a REVOKED event naming the device, the handle and the "
        "reason; from then on the message MUST NOT deliver, MSG_ACTIVATE of it MUST fail with REVOKED, and "
        "MSG_FREE MUST free it.",
    ),
    req(
        "HV-REVOKE-003",
        Level.SHOULD,
        "events",
        "The hypervisor SHOULD suppress the IOMMU's fault records for a revoked entry (VT-d IRTE FPD, AMD-Vi "
        "SupIOPF) so that a storming device cannot flood the host's fault log.",
    ),
    req(
        "GUEST-REVOKE-001",
        Level.MUST,
        "events",
        "On REVOKED the guest MUST stop using the handle (mask the vector in the device where it can) and free it "
        "with MSG_FREE; it MAY allocate and activate a new message for the slot afterwards.",
    ),
    req(
        "GUEST-REFUSE-003",
        Level.MUST_NOT,
        "events",
        "The guest MUST NOT act on an event for a device or handle it does not hold: a REVOKED whose handle it does "
        "not hold on the event's device (never allocated, already freed, held on another device, one past the "
        "largest it holds) or a DEVICE_REMOVED of a device or sub-device it has not claimed (another function, "
        "another sub-device id of a claimed function) it acknowledges, and it frees, masks, drops and re-activates "
        "nothing for it.",
    ),
)
