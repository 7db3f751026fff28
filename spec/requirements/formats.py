"""Requirements of the section Message formats (spec/platforms.py holds the layouts they refer to)."""

from __future__ import annotations

from .model import Level, Requirement, req

FORMATS: tuple[Requirement, ...] = (
    req(
        "HV-FMT-001",
        Level.MUST,
        "formats",
        "The hypervisor MUST report in GET_INFO message_format the format of the platform it runs on (VT-d "
        "remappable, AMD-Vi, Arm GIC ITS or RISC-V IMSIC), and every pair it returns from MSG_ALLOC and "
        "MSG_ACTIVATE MUST follow that format's layout: each fixed field holds its value and each reserved bit "
        "is zero.",
    ),
    req(
        "HV-FMT-002",
        Level.MUST,
        "formats",
        "On an Arm GIC ITS behind an SMMU, the address of a pair MUST be the ITS doorbell (GITS_TRANSLATER) as "
        "the device addresses it, an IOVA the hypervisor has mapped in the device's MSI window before it returns "
        "the pair, and MUST NOT be a host physical address.",
    ),
    req(
        "HV-FMT-003",
        Level.MUST,
        "formats",
        "On a platform whose pair names the destination (RISC-V IMSIC: the hart's interrupt file), a retarget "
        "to another vCPU MUST return the pair of the new destination with PVMSI_ACTIVATE_REWRITE set, and that "
        "pair, once written, MUST deliver to the new destination.",
    ),
    req(
        "HV-FMT-004",
        Level.MUST,
        "formats",
        "Where the data of a pair is the vector itself (RISC-V IMSIC: the interrupt identity), the hypervisor "
        "MUST fail an activating MSI allocate entry or an MSI activate entry whose first vector is not a multiple "
        "of vector_count with INVALID_PARAMETER, since the device puts the vector's index in the low data bits.",
    ),
    req(
        "GUEST-FMT-001",
        Level.MUST,
        "formats",
        "The guest MUST write a pair exactly as the hypervisor returned it, all 64 address bits and the data, "
        "whatever the platform's format, and MUST NOT compose or alter a pair itself.",
    ),
)
