"""The documents pvmsi rests on (spec "References"), each defined once and cited by key from the pages.

A **normative** reference is one whose text an implementation must follow where pvmsi points to it (the SMCCC's
function-id layout, SBI's ``sbiret``, VT-d's remappable message format, ...): a conforming implementation is
conforming to the cited part of it too.  An **informative** reference explains how a platform does something
(KVM's hypercall code, VFIO's uapi) and binds no one.  Pages cite a reference with ``{{pvmsi cite KEY}}``; the
site lists them all with ``{{pvmsi references}}`` and ``pvmsi spec dump --json`` carries them.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Kind = Literal["normative", "informative"]


@dataclass(frozen=True)
class Reference:
    """One cited document: what it is, where to get it, and what pvmsi takes from it."""

    key: str
    title: str
    publisher: str
    document: str
    kind: Kind
    url: str
    used_for: str


REFERENCES: tuple[Reference, ...] = (
    # -- normative ---------------------------------------------------------------------------------------------
    Reference(
        "pcie",
        "PCI Express Base Specification",
        "PCI-SIG",
        "Revision 5.0 or later",
        "normative",
        "https://pcisig.com/specifications",
        "MSI and MSI-X capability structures and the MSI-X table and PBA; requester id; the PASID TLP prefix; "
        "Function Level Reset; the Vendor ID register, whose 16-bit values PCI-SIG assigns, which identifies a "
        "vendor's pvmsi extensions (PVMSI_FN_VENDOR_ID).",
    ),
    Reference(
        "vtd",
        "Intel Virtualization Technology for Directed I/O Architecture Specification",
        "Intel",
        "Order number D51397; chapter 5 (Interrupt Remapping) and the IRTE layout",
        "normative",
        "https://www.intel.com/content/www/us/en/content-details/774206/intel-virtualization-technology-for-directed-i-o-architecture-specification.html",
        "The remappable MSI format (handle, SHV, sub-handle), IRTE source validation (SID, SQ, SVT) and fault "
        "processing disable (FPD).",
    ),
    Reference(
        "amd-iommu",
        "AMD I/O Virtualization Technology (IOMMU) Specification",
        "AMD",
        "Publication 48882",
        "normative",
        "https://www.amd.com/en/support/tech-docs/amd-io-virtualization-technology-iommu-specification",
        "Interrupt remapping by per-device table (DTE IntTab, IntTabLen) indexed by the MSI data; source "
        "validation by DeviceID.",
    ),
    Reference(
        "gic",
        "Arm Generic Interrupt Controller Architecture Specification, GIC architecture version 3 and version 4",
        "Arm",
        "IHI 0069",
        "normative",
        "https://developer.arm.com/documentation/ihi0069/latest",
        "The ITS: GITS_TRANSLATER, DeviceID and EventID translation, LPI INTIDs, GICv4 direct injection.",
    ),
    Reference(
        "smmuv3",
        "Arm System Memory Management Unit Architecture Specification, SMMU architecture version 3",
        "Arm",
        "IHI 0070",
        "normative",
        "https://developer.arm.com/documentation/ihi0070/latest",
        "A device's MSI write is translated by the SMMU: the ITS doorbell is an IOVA mapped for the device.",
    ),
    Reference(
        "smccc",
        "Arm SMC Calling Convention",
        "Arm",
        "DEN0028, version 1.3 or later",
        "normative",
        "https://developer.arm.com/documentation/den0028/latest",
        "Function-id layout and owning entities, the Call UID query, the return convention (NOT_SUPPORTED), "
        "register preservation and the SVE hint (function-id bit 16).",
    ),
    Reference(
        "psci",
        "Arm Power State Coordination Interface",
        "Arm",
        "DEN0022, version 1.0 or later",
        "normative",
        "https://developer.arm.com/documentation/den0022/latest",
        "PSCI_FEATURES, which tells an arm64 guest whether SMCCC_VERSION exists (and with it the SMCCC conduit).",
    ),
    Reference(
        "iort",
        "Arm IO Remapping Table (IORT) Platform Design Document",
        "Arm",
        "DEN0049",
        "normative",
        "https://developer.arm.com/documentation/den0049/latest",
        "How a requester id maps to an ITS DeviceID and an SMMU StreamID on ACPI systems (the msi-map of a "
        "device tree is the same mapping).",
    ),
    Reference(
        "sbi",
        "RISC-V Supervisor Binary Interface Specification",
        "RISC-V International",
        "Version 2.0 or later",
        "normative",
        "https://github.com/riscv-non-isa/riscv-sbi-doc/releases",
        "The binary encoding (EID in a7, FID in a6, sbiret in a0/a1), the standard error codes, "
        "sbi_probe_extension and the extension-id ranges.",
    ),
    Reference(
        "aia",
        "The RISC-V Advanced Interrupt Architecture",
        "RISC-V International",
        "Version 1.0",
        "normative",
        "https://github.com/riscv/riscv-aia/releases",
        "IMSIC interrupt files (per hart, guest interrupt files for VS level) and interrupt identities.",
    ),
    Reference(
        "riscv-iommu",
        "RISC-V IOMMU Architecture Specification",
        "RISC-V International",
        "Version 1.0",
        "normative",
        "https://github.com/riscv-non-isa/riscv-iommu/releases",
        "MSI page tables mapping a guest's IMSIC addresses to host interrupt files.",
    ),
    Reference(
        "intel-sdm",
        "Intel 64 and IA-32 Architectures Software Developer's Manual",
        "Intel",
        "Order number 325462",
        "normative",
        "https://www.intel.com/content/www/us/en/developer/articles/technical/intel-sdm.html",
        "VMCALL, CPUID, the local APIC and x2APIC ids, interrupt vectors.",
    ),
    Reference(
        "amd-apm",
        "AMD64 Architecture Programmer's Manual, Volume 2: System Programming",
        "AMD",
        "Publication 24593",
        "normative",
        "https://www.amd.com/en/support/tech-docs/amd64-architecture-programmers-manual-volumes-1-5",
        "VMMCALL, CPUID, the APIC ids.",
    ),
    Reference(
        "tdx-ghci",
        "Intel TDX Guest-Hypervisor Communication Interface (GHCI) Specification",
        "Intel",
        "Document 344426",
        "normative",
        "https://www.intel.com/content/www/us/en/developer/tools/trust-domain-extensions/documentation.html",
        "TDG.VP.VMCALL and shared (GPA.SHARED) guest memory for a TD's calls to the host.",
    ),
    Reference(
        "ghcb",
        "SEV-ES Guest-Hypervisor Communication Block Standardization",
        "AMD",
        "Publication 56421",
        "normative",
        "https://www.amd.com/en/developer/sev.html",
        "The GHCB protocol and VMGEXIT for SEV-ES and SEV-SNP guests; shared pages.",
    ),
    Reference(
        "cca-rmm",
        "Arm Realm Management Monitor Specification",
        "Arm",
        "DEN0137",
        "normative",
        "https://developer.arm.com/documentation/den0137/latest",
        "RSI_HOST_CALL and unprotected IPA space for a Realm's calls to the host.",
    ),
    # -- informative -------------------------------------------------------------------------------------------
    Reference(
        "kvm-hypercalls",
        "Linux KVM documentation: hypercalls (x86 and arm64)",
        "The Linux kernel",
        "Documentation/virt/kvm/x86/hypercalls.rst, Documentation/virt/kvm/arm/hypercalls.rst",
        "informative",
        "https://docs.kernel.org/virt/kvm/",
        "How KVM dispatches VMCALL/VMMCALL and vendor-hypervisor SMCCC calls, and answers a call from CPL > 0.",
    ),
    Reference(
        "vfio",
        "Linux VFIO uapi",
        "The Linux kernel",
        "include/uapi/linux/vfio.h",
        "informative",
        "https://docs.kernel.org/driver-api/vfio.html",
        "What a host can hand a guest: VFIO_DEVICE_SET_IRQS, VFIO_REGION_INFO_CAP_MSIX_MAPPABLE; configuration "
        "space stays emulated.",
    ),
    Reference(
        "linux-msi",
        "Linux generic MSI and irqdomain interfaces",
        "The Linux kernel",
        "Documentation/core-api/irq/irq-domain.rst, kernel/irq/msi.c",
        "informative",
        "https://docs.kernel.org/core-api/irq/irq-domain.html",
        "How a guest kernel allocates, activates and retargets interrupts and composes their messages.",
    ),
    Reference(
        "papr",
        "Linux on Power Architecture Platform Reference (LoPAPR)",
        "OpenPOWER Foundation",
        "ibm,change-msi",
        "informative",
        "https://openpowerfoundation.org/specifications/linuxonpower/",
        "The explicit model: firmware, not the guest, writes the device's MSI configuration.",
    ),
)

#: Each reference by its key (keys are unique: tests/test_references.py).
BY_KEY: MappingProxyType[str, Reference] = MappingProxyType({r.key: r for r in REFERENCES})
