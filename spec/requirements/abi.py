"""Requirements of the platform calling paths (spec "Calling conventions", "Discovery"): x86-64 CPL and CPUID
path, arm64 SMCCC hint bits and vendor UID, riscv64 sbiret."""

from __future__ import annotations

from .model import Level, Requirement, req

REQUIREMENTS: tuple[Requirement, ...] = (
    req(
        "HV-ABI-001",
        Level.MUST_NOT,
        "calling",
        "On x86-64 the hypervisor MUST NOT run a VMCALL or VMMCALL executed at CPL 1, 2 or 3 whose rax holds a "
        "pvmsi function id: it returns -1 in rax (KVM's -KVM_EPERM), leaves every other register unchanged and "
        "changes no state.",
    ),
    req(
        "HV-ABI-002",
        Level.MUST,
        "calling",
        "On arm64 the hypervisor MUST ignore bit 16 of the function id (the SMCCC 1.3 SVE hint), decoding a pvmsi "
        "function id with it set as the same call, and MUST answer a function id with any of bits 23:17 set "
        "with SMCCC NOT_SUPPORTED (-1) in x0.",
    ),
    req(
        "HV-ABI-003",
        Level.MUST,
        "discovery",
        "On arm64 a hypervisor that implements pvmsi MUST implement SMCCC 1.1 or later over HVC (SMCCC_VERSION, "
        "found through PSCI_FEATURES) and MUST answer the Vendor Specific Hypervisor Service Call UID "
        "(0x8600FF01) with the pvmsi UID in w0..w3; a hypervisor that answers it with another UID MUST NOT serve "
        "pvmsi at the function ids 0xC6005000-0xC60050FF.",
    ),
    req(
        "HV-ABI-004",
        Level.MUST,
        "calling",
        "On riscv64 the hypervisor MUST return every pvmsi call as an SBI sbiret: for a status of zero or more, "
        "a0 = SBI_SUCCESS and a1 = the call's value; for a negative status, a0 = the SBI error the mapping table "
        "gives for it (SBI_ERR_FAILED for a status the table does not list) and a1 = the pvmsi status.",
    ),
    req(
        "HV-ABI-005",
        Level.MUST,
        "discovery",
        "On x86-64 the base + 1 leaf of the pvmsi CPUID block MUST return in EBX the path by which a VMCALL or "
        "VMMCALL reaches pvmsi in this VM (1 = NATIVE); a hypervisor whose VMCALL and VMMCALL go to a Hyper-V or "
        "Xen emulation that does not hand the pvmsi function ids to pvmsi MUST report path 0 or expose no "
        "pvmsi leaf block.",
    ),
    req(
        "GUEST-ABI-001",
        Level.MUST_NOT,
        "discovery",
        "On arm64 the guest MUST NOT issue a pvmsi call unless, after finding SMCCC 1.1 or later, it has read the "
        "Vendor Specific Hypervisor Service Call UID and found it equal to the pvmsi UID; under any other UID "
        "(KVM's, Hyper-V's, Gunyah's) pvmsi is absent.",
    ),
    req(
        "GUEST-ABI-002",
        Level.MUST_NOT,
        "discovery",
        "On riscv64 the guest MUST NOT issue a pvmsi call unless SBI probe_extension of the pvmsi extension id "
        "answered SBI_SUCCESS with a non-zero value.",
    ),
    req(
        "GUEST-ABI-003",
        Level.MUST_NOT,
        "discovery",
        "On x86-64 the guest MUST NOT issue a pvmsi call unless it has found the pvmsi CPUID leaf block and its "
        "base + 1 leaf names in EBX a hypercall path the guest implements (1 = NATIVE); path 0 or an unknown path "
        "means pvmsi is absent.",
    ),
    req(
        "GUEST-CVM-001",
        Level.MUST,
        "calling",
        "A guest in a confidential VM (Intel TDX, AMD SEV-SNP, Arm CCA) MUST place every parameter block in memory "
        "it has shared with the host (a TDX GPA with the shared bit set, an SEV-SNP page converted to shared, a "
        "CCA unprotected IPA), never in private memory.",
    ),
    req(
        "GUEST-CVM-002",
        Level.MUST_NOT,
        "calling",
        "A guest in a confidential VM MUST NOT write into a device a pair whose address lies outside the interrupt "
        "window of the message format GET_INFO reported (on x86, 0xFEE00000-0xFEEFFFFF), as an address in its own "
        "memory would be; it frees such a message instead.",
    ),
)
