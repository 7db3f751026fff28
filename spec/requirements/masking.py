"""Requirements of the section Device control on masking: who masks what on each path (spec "Device control",
"Masking")."""

from __future__ import annotations

from .model import Level, Requirement, req

REQUIREMENTS: tuple[Requirement, ...] = (
    req(
        "HV-MASK-001",
        Level.MUST_NOT,
        "device",
        "While MSI-X is claimed, the hypervisor MUST NOT write any field of an MSI-X table entry, its Mask Bit "
        "included, in MSG_ALLOC, MSG_ACTIVATE, MSG_FREE or at any other time before the claim ends "
        "(HV-RELEASE-001); the table, its masks and the PBA are the guest's.",
    ),
    req(
        "HV-MASK-002",
        Level.MUST,
        "device",
        "A message a claimed device raises while the guest has it masked (an MSI Mask Bit, or Function Mask, which "
        "the hypervisor applies, HV-EMU-005, HV-EMU-006) MUST be delivered exactly once when the guest unmasks it, "
        "to the target in force then; a hypervisor that implements the mask by other means than the device's "
        "register (for example by gating the remapping entry) records the message and delivers it on unmask.",
    ),
)
