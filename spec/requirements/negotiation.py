"""Requirements of the section Version and feature negotiation (and the VM state machine)."""

from __future__ import annotations

from .model import Level, Requirement, req

REQUIREMENTS: tuple[Requirement, ...] = (
    req(
        "HV-STATE-001",
        Level.MUST,
        "negotiation",
        "The hypervisor MUST keep each VM in one of the states OPEN and NEGOTIATED, start it in OPEN, change "
        "state only by the transitions of the VM state machine, and fail a call that the current state does "
        "not allow with WRONG_STATE.",
    ),
    req(
        "HV-STATE-002",
        Level.MUST,
        "negotiation",
        "The hypervisor MUST fail DEVICE_QUERY, DEVICE_CLAIM, DEVICE_RELEASE, MSG_ALLOC, MSG_ACTIVATE, "
        "MSG_DEACTIVATE, MSG_FREE, EVENT_CONFIG, EVENT_FETCH and EVENT_ACK with WRONG_STATE while the VM is OPEN.",
    ),
    req(
        "HV-NEG-001",
        Level.MUST,
        "negotiation",
        "The hypervisor MUST fail NEGOTIATE with VERSION_MISMATCH when version_major differs from its major "
        "version or version_minor exceeds its minor version, before any feature check, writing nothing, and leave "
        "the VM OPEN.",
    ),
    req(
        "HV-NEG-002",
        Level.MUST,
        "negotiation",
        "The hypervisor MUST fail NEGOTIATE with INVALID_PARAMETER when features has a bit that GET_INFO did not "
        "offer (an undefined bit is never offered), reporting those bits in negotiate_out.refused with "
        "negotiate_out.features zero, and leave the VM OPEN.",
    ),
    req(
        "HV-NEG-003",
        Level.MUST,
        "negotiation",
        "The hypervisor MUST fail NEGOTIATE with INVALID_PARAMETER when features has none of the message-kind "
        "bits PVMSI_F_MSI, PVMSI_F_MSIX and PVMSI_F_IMS.",
    ),
    req(
        "HV-NEG-004",
        Level.MUST,
        "negotiation",
        "The hypervisor MUST refuse NEGOTIATE with FEATURES_REFUSED when features lacks a bit of "
        "features_required, reporting the missing bits in negotiate_out.refused, and leave the VM OPEN.",
    ),
    req(
        "HV-NEG-005",
        Level.MUST,
        "negotiation",
        "On accepting NEGOTIATE the hypervisor MUST return SUCCESS, write the accepted features to "
        "negotiate_out.features and the value register, put them in force and move the VM to NEGOTIATED.",
    ),
    req(
        "HV-NEG-006",
        Level.MUST,
        "negotiation",
        "The hypervisor MUST fail NEGOTIATE with WRONG_STATE while the VM is NEGOTIATED, keeping the features "
        "in force.",
    ),
    req(
        "HV-NEG-007",
        Level.MUST_NOT,
        "negotiation",
        "The hypervisor MUST NOT later withdraw or refuse a feature set it accepted, for the life of the "
        "negotiation (until RESET or VM reset).",
    ),
    req(
        "HV-NEG-008",
        Level.MUST,
        "negotiation",
        "The hypervisor MUST fail with NOT_PERMITTED a request that uses a message kind, a delivery flag or a "
        "sub-device id whose feature is not in force.",
    ),
    req(
        "GUEST-NEG-001",
        Level.MUST_NOT,
        "negotiation",
        "The guest MUST NOT accept a feature bit that GET_INFO did not offer.",
    ),
    req(
        "GUEST-NEG-002",
        Level.MUST,
        "negotiation",
        "The guest MUST accept every bit of features_required, or not negotiate at all.",
    ),
    req(
        "GUEST-NEG-003",
        Level.MUST,
        "negotiation",
        "The guest MUST check the status of NEGOTIATE and, on any failure, MUST keep using emulated MSI and "
        "MSI-X for every device.",
    ),
    req(
        "GUEST-NEG-004",
        Level.MUST,
        "negotiation",
        "Once NEGOTIATE succeeded, the guest MUST obtain every address/data pair that it writes into a claimed "
        "kind of a claimed device from MSG_ALLOC or MSG_ACTIVATE, and MUST write it exactly as returned.",
    ),
    req(
        "GUEST-NEG-005",
        Level.SHOULD,
        "negotiation",
        "The guest SHOULD negotiate once, early during boot, before it enables MSI or MSI-X on any device it "
        "means to claim.",
    ),
    req(
        "GUEST-REFUSE-001",
        Level.MUST_NOT,
        "negotiation",
        "The guest MUST NOT use a feature it did not ask for in negotiate_in.features, whatever NEGOTIATE's value "
        "and negotiate_out.features report: a bit granted beyond those asked (a kind, SUBDEVICE, POSTED, an unknown "
        "or vendor bit, the bit just above the highest one asked) is not in force for it; it claims no kind, names "
        "no sub-device and sets no flag behind such a bit, and uses the kinds it asked for as negotiated.",
    ),
    req(
        "GUEST-NEG-006",
        Level.MUST_NOT,
        "negotiation",
        "The guest MUST NOT use a message kind, a delivery flag or a sub-device id whose feature bit NEGOTIATE's "
        "value did not grant (HV-NEG-008 refuses it; a bit granted but not asked for is GUEST-REFUSE-001's): "
        "it names only negotiated kinds in DEVICE_CLAIM and MSG_ALLOC, and keeps using a kind it did not "
        "negotiate through emulation (MSI, MSI-X; GUEST-EMU-002) or not at all (IMS).",
    ),
)
