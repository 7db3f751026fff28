"""Requirements of reserve and activate (MSG_ALLOC without PVMSI_ALLOC_ACTIVATE, MSG_ACTIVATE, MSG_DEACTIVATE), of
the locality hint and of per-vector targets in a multi-message MSI block (section "Reserve, activate, deactivate
and free"; the message state machine is :data:`pvmsi.spec.states.MESSAGE_MACHINE`)."""

from __future__ import annotations

from .model import Level, Requirement, req

REQUIREMENTS: tuple[Requirement, ...] = (
    req(
        "HV-ACT-001",
        Level.MUST,
        "messages",
        "For an allocate entry without PVMSI_ALLOC_ACTIVATE the hypervisor MUST reserve the message: return a "
        "non-zero handle with address and data zero, account its vectors against the quotas, and deliver nothing "
        "for it (no write of any pair reaches a vCPU through its remapping entries) until it is activated.",
    ),
    req(
        "HV-ACT-002",
        Level.MUST,
        "messages",
        "The hypervisor MUST fail an allocate entry with INVALID_PARAMETER when, without PVMSI_ALLOC_ACTIVATE, "
        "vcpu, vector or flags is not zero; when, without PVMSI_ALLOC_LOCALITY_HINT, hint_vcpu is not zero; or "
        "when, with it, hint_vcpu is not the architectural id of a vCPU of the VM.",
    ),
    req(
        "HV-ACT-003",
        Level.MUST_NOT,
        "messages",
        "The hypervisor MUST NOT let a locality hint bind or change delivery: an activate entry of a message "
        "reserved with a hint MUST accept any vCPU of the VM and deliver to the vCPU it names.",
    ),
    req(
        "HV-ACT-004",
        Level.MAY,
        "messages",
        "The hypervisor MAY use a locality hint to choose the remapping unit, table or posted-interrupt "
        "descriptor memory of the message (near the hinted vCPU's NUMA node); the guest cannot observe the choice.",
    ),
    req(
        "HV-ACT-005",
        Level.MUST,
        "messages",
        "For a deactivate entry the hypervisor MUST stop delivery of the vectors it names (vector index, or "
        "every active vector with PVMSI_ACTENT_BLOCK): a later write of the message's pair delivers nothing for "
        "them, the handle stays valid and a later activate entry delivers again. It MUST fail the entry with "
        "UNKNOWN_HANDLE for a handle not held for the device and with NOT_ACTIVE when no vector it names is active.",
    ),
    req(
        "HV-ACT-006",
        Level.SHOULD,
        "messages",
        "On deactivation the hypervisor SHOULD block the remapping entries with fault reporting suppressed where "
        "the IOMMU can (VT-d IRTE Present clear with FPD set; AMD-Vi IRTE RemapEn clear with SupIOPF set), so "
        "that a device still writing the pair does not flood the host's fault log.",
    ),
    req(
        "HV-ACT-007",
        Level.MUST,
        "messages",
        "The hypervisor MUST fail an activate or deactivate entry with INVALID_PARAMETER when index is not below "
        "the message's vector count, or when PVMSI_ACTENT_BLOCK is set and index is not zero.",
    ),
    req(
        "HV-MSI-001",
        Level.MUST,
        "messages",
        "Where the platform gives each vector of a multi-message MSI block its own remapping entry (VT-d, AMD-Vi, "
        "GIC ITS), the hypervisor MUST accept an activate entry for one vector index of the block with any vCPU "
        "and any vector of the VM (no contiguity), deliver data | index there, and leave the other vectors' "
        "targets unchanged.",
    ),
    req(
        "HV-MSI-002",
        Level.MUST,
        "messages",
        "Where the vectors of a block share one address and consecutive identities (RISC-V IMSIC), the hypervisor "
        "MUST fail with PER_VECTOR_REFUSED an activate entry without PVMSI_ACTENT_BLOCK for a vector of a "
        "multi-message block that is reserved, or that names a vCPU other than the block's or a vector other "
        "than the block's vector + index, and a deactivate entry without PVMSI_ACTENT_BLOCK for such a block; "
        "nothing changes for the entry.",
    ),
    req(
        "HV-MSI-003",
        Level.MUST,
        "messages",
        "For an activate entry with PVMSI_ACTENT_BLOCK the hypervisor MUST make vector i of the message deliver "
        "vector + i to the entry's vCPU, for every i below its vector count.",
    ),
    req(
        "GUEST-ACT-001",
        Level.MUST_NOT,
        "messages",
        "The guest MUST NOT write into a device, nor enable a slot with, the address/data of a reserved "
        "message (an MSG_ALLOC result without PVMSI_ALLOC_ACTIVATE): it activates the message first and writes "
        "the pair MSG_ACTIVATE returns.",
    ),
)
