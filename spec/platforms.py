"""Platforms and their message formats (spec "Message formats"): defined once, used by the dump, the docs, the C
header and the reference platform model.

A hypervisor runs on one platform: an interrupt-remapping or translation unit with the message format its
address/data pairs are in (GET_INFO ``message_format``).  The platform implies the architecture, and with it
what an allocate or activate entry's ``vcpu`` and ``vector`` mean (:data:`ARCH_TARGETS`).  Each format's bit
layout is a table of :class:`BitField` (address and data), rendered into docs/message-formats.md, the dump and
the C header.

Normative references: Intel Virtualization Technology for Directed I/O Architecture Specification (rev. 4.1 or
later), chapter 5 "Interrupt Remapping"; AMD I/O Virtualization Technology (IOMMU) Specification, publication
48882 (rev. 3.08 or later), section 2.2.5 "Interrupt Remapping Tables"; Arm Generic Interrupt Controller
Architecture Specification GICv3 and GICv4 (IHI 0069), chapter 5 "Locality-specific Peripheral Interrupts and
the ITS"; Arm System Memory Management Unit Architecture Specification SMMUv3 (IHI 0070); The RISC-V Advanced
Interrupt Architecture (AIA) 1.0, chapter 3 "Incoming MSI Controller (IMSIC)"; RISC-V IOMMU Architecture
Specification 1.0, "MSI page tables".
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from .constants import MessageFormat

Arch = Literal["x86_64", "arm64", "riscv64"]
PlatformKey = Literal["vtd", "amd-vi", "gic-its", "imsic"]


@dataclass(frozen=True)
class BitField:
    """Bits ``hi:lo`` of a 64-bit address or a 32-bit data value: a fixed ``value`` or a named variable field."""

    hi: int
    lo: int
    name: str
    doc: str
    value: int | None = None

    @property
    def width(self) -> int:
        return self.hi - self.lo + 1

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lo

    @property
    def bits(self) -> str:
        return f"{self.hi}" if self.hi == self.lo else f"{self.hi}:{self.lo}"


@dataclass(frozen=True)
class ArchTarget:
    """What ``vcpu`` and ``vector`` name on one architecture (HV-FMT-001, HV-ALLOC-006)."""

    arch: Arch
    vcpu_id: str
    vector_name: str
    vector_min: int
    #: The largest vector every hypervisor of the architecture accepts.
    vector_max_guaranteed: int
    #: The architecture's largest possible vector (a platform may stop earlier: ``vector_limit``).
    vector_max: int
    vector_limit: str


@dataclass(frozen=True)
class PlatformDef:
    """One platform: its key (ICS ``platform``, ``--platform``), architecture, message format and layout."""

    key: PlatformKey
    title: str
    arch: Arch
    message_format: MessageFormat
    address: tuple[BitField, ...]
    data: tuple[BitField, ...]
    selects: str
    source_validation: str
    retarget: str
    #: Whether a retarget to another vCPU changes the pair (REWRITE set, HV-FMT-005).
    retarget_changes_pair: bool
    #: How the vectors of a multi-message MSI block are remapped, and what MSG_ACTIVATE may do with one of them.
    multi_msi: str
    #: Whether each vector of a multi-message MSI block can have its own vCPU and vector (HV-MSI-001); where not,
    #: a per-vector MSG_ACTIVATE that departs from the block is refused with PER_VECTOR_REFUSED (HV-MSI-002).
    per_vector_targets: bool
    references: tuple[str, ...]


ARCH_TARGETS: MappingProxyType[Arch, ArchTarget] = MappingProxyType(
    {
        "x86_64": ArchTarget(
            "x86_64",
            "The destination's APIC id (x2APIC id where the VM has x2APIC), as CPUID leaf 0xB/0x1F reports it "
            "to that vCPU.",
            "vector",
            32,
            255,
            255,
            "Vectors 0 to 31 are the CPU's exceptions; 32 to 255 are the interrupt vectors of each CPU.",
        ),
        "arm64": ArchTarget(
            "arm64",
            "The destination's MPIDR_EL1 affinity packed as Aff3 << 24 | Aff2 << 16 | Aff1 << 8 | Aff0 (the "
            "value the vCPU reads from MPIDR_EL1 bits 39:32 and 23:0).",
            "LPI INTID",
            8192,
            16383,
            (1 << 24) - 1,
            "LPI INTIDs start at 8192; the largest is 2^IDbits - 1 with IDbits from the vGIC's GICD_TYPER.IDbits "
            "(at least 14 with LPIs; KVM's vGIC has 16: 65535).",
        ),
        "riscv64": ArchTarget(
            "riscv64",
            "The destination's hart id (mhartid, as the device tree or ACPI RHCT names the hart).",
            "interrupt identity",
            1,
            63,
            2047,
            "Identity 0 means no interrupt; 1 to N, where N is the VM's IMSIC interrupt-file size (63 to 2047, a "
            "multiple of 64 minus 1; device tree riscv,num-ids, KVM_DEV_RISCV_AIA_CONFIG_IDS).",
        ),
    }
)

_INTEL = "Intel VT-d Architecture Specification, chapter 5 (Interrupt Remapping), 5.1.2.2 and 5.1.5.2"
_AMD = "AMD IOMMU Specification 48882, 2.2.5 (Interrupt Remapping Tables) and 2.2.2 (DTE IntTab/IntTabLen)"
_GIC = "Arm GICv3/v4 Architecture Specification IHI 0069, 5.2 (LPIs) and 5.3 (ITS, GITS_TRANSLATER)"
_SMMU = "Arm SMMUv3 Architecture Specification IHI 0070, 3.18 (interrupts and MSIs through the SMMU)"
_AIA = "RISC-V Advanced Interrupt Architecture 1.0, chapter 3 (IMSIC interrupt files)"
_RVIOMMU = "RISC-V IOMMU Architecture Specification 1.0, 2.3.3 and 9.5 (MSI page tables)"

PLATFORMS: tuple[PlatformDef, ...] = (
    PlatformDef(
        "vtd",
        "Intel VT-d interrupt remapping",
        "x86_64",
        MessageFormat.VTD_REMAPPED,
        (
            BitField(63, 32, "address_hi", "Zero.", 0),
            BitField(31, 20, "window", "The interrupt address window.", 0xFEE),
            BitField(19, 5, "handle_lo", "handle[14:0]: the interrupt-remapping table entry (IRTE) index."),
            BitField(4, 4, "interrupt_format", "1: remappable format.", 1),
            BitField(3, 3, "shv", "Sub-handle valid: 1, the data carries a sub-handle.", 1),
            BitField(2, 2, "handle_hi", "handle[15]."),
            BitField(1, 0, "ignored", "Don't care; pvmsi hands out zero.", 0),
        ),
        (
            BitField(31, 16, "reserved", "Zero.", 0),
            BitField(15, 0, "subhandle", "Sub-handle: IRTE = handle + sub-handle; an MSI block's vector i sets i."),
        ),
        "IRTE handle + sub-handle of the one remapping table of the remapping unit.",
        "The IRTE's SVT/SQ/SID: the write's requester id (bus/devfn) must match; no PASID check.",
        "The hypervisor rewrites the IRTE (destination APIC id, vector): the pair does not change.",
        False,
        "A block of n vectors is n consecutive IRTEs: the pair names the first with SHV set, and the device's "
        "data | i is sub-handle i, so vector i is IRTE handle + i with its own destination and vector (Linux "
        "intel irq_remapping: one IRTE per sub-vector). Each vector can have its own vCPU and any vector, not "
        "contiguous ones.",
        True,
        (_INTEL,),
    ),
    PlatformDef(
        "amd-vi",
        "AMD-Vi interrupt remapping",
        "x86_64",
        MessageFormat.AMD_VI,
        (
            BitField(63, 32, "address_hi", "Zero.", 0),
            BitField(31, 20, "window", "The interrupt address window.", 0xFEE),
            BitField(19, 0, "compat", "As compatibility format; pvmsi hands out zero (the IRTE holds the target).", 0),
        ),
        (
            BitField(31, 11, "reserved", "Zero.", 0),
            BitField(10, 0, "index", "Index into the device's interrupt remapping table (up to 2048 entries)."),
        ),
        "data[10:0] indexes the interrupt remapping table of the device table entry (DTE) that the write's "
        "DeviceID selects (IntTab, IntTabLen up to 2048 entries).",
        "By DeviceID: the table is the requester's own, so another device's write reaches only its own table.",
        "The hypervisor rewrites the IRTE (destination, vector): the pair does not change.",
        False,
        "A block of n vectors is n consecutive entries of the device's interrupt remapping table: the device's "
        "data | i indexes entry index + i, one IRTE per vector (Linux amd_iommu allocates the block aligned). "
        "Each vector can have its own vCPU and any vector.",
        True,
        (_AMD,),
    ),
    PlatformDef(
        "gic-its",
        "Arm GICv3/v4 ITS behind an SMMUv3",
        "arm64",
        MessageFormat.ARM_GIC_ITS,
        (
            BitField(
                63,
                0,
                "doorbell_iova",
                "The ITS doorbell (GITS_TRANSLATER) as the device addresses it: an IOVA in the device's MSI window "
                "that the host maps to the ITS (Linux iommu_dma_prepare_msi, the MSI cookie; VFIO's reserved "
                "IOMMU_RESV_SW_MSI region at 0x8000000, 1 MiB). Never a host physical address the guest could use.",
            ),
        ),
        (BitField(31, 0, "event_id", "EventID: the index into the device's interrupt translation table (ITT)."),),
        "The ITS takes DeviceID from the requester id (msi-map / IORT ID mapping) and EventID from the data; the "
        "device's ITT maps the EventID to an LPI INTID and a collection (GICv4: a vLPI of a vPE).",
        "By DeviceID: the ITT is the requester's own; the doorbell IOVA is mapped only in assigned devices' "
        "stage-2 tables.",
        "The hypervisor remaps the event (MOVI, GICv4 VMOVI; a new INTID: DISCARD + MAPTI): the pair does not change.",
        False,
        "A block of n vectors is n consecutive EventIDs of the device's ITT (Linux its_pci_msi: the device's "
        "data | i is EventID + i): each EventID maps to its own LPI and collection, so each vector can have its "
        "own vCPU and its own INTID.",
        True,
        (_GIC, _SMMU),
    ),
    PlatformDef(
        "imsic",
        "RISC-V AIA IMSIC behind a RISC-V IOMMU",
        "riscv64",
        MessageFormat.RISCV_IMSIC,
        (
            BitField(63, 12, "file_page", "The target hart's interrupt-file page in the VM's address space."),
            BitField(11, 0, "seteipnum_le", "Offset of seteipnum_le in the page: zero.", 0),
        ),
        (
            BitField(31, 11, "reserved", "Zero.", 0),
            BitField(10, 0, "identity", "The interrupt identity, 1..N."),
        ),
        "The IOMMU's MSI page table (device context msiptp, msi_addr_mask/pattern) maps the guest interrupt-file "
        "page to the host's guest interrupt file of the hart the vCPU runs on (or an MRIF); the data is the "
        "identity, passed through.",
        "By device context: a device's MSI page table maps only its VM's interrupt files.",
        "A retarget to another hart names another interrupt file: the address changes and REWRITE is set; a new "
        "identity on the same hart changes the data.",
        True,
        "A block has one address, one hart's interrupt file, and the device's data | i is identity + i in that "
        "file: the vectors of a block share the hart and are consecutive, aligned identities (HV-FMT-004). A "
        "per-vector target on another hart or with a vector other than the block's base + i is refused "
        "(PER_VECTOR_REFUSED); the block moves whole, with PVMSI_ACTENT_BLOCK.",
        False,
        (_AIA, _RVIOMMU),
    ),
)

PLATFORM_KEYS: tuple[PlatformKey, ...] = tuple(p.key for p in PLATFORMS)
DEFAULT_PLATFORM: PlatformKey = "vtd"


def platform(key: str) -> PlatformDef:
    """The platform ``key`` (vtd, amd-vi, gic-its, imsic)."""
    for p in PLATFORMS:
        if p.key == key:
            return p
    raise KeyError(f"unknown platform {key!r} (one of {', '.join(PLATFORM_KEYS)})")


def platform_of_format(fmt: MessageFormat) -> PlatformDef:
    """The platform whose message format is ``fmt``."""
    for p in PLATFORMS:
        if p.message_format is fmt:
            return p
    raise KeyError(fmt)


def arch_target(key: str) -> ArchTarget:
    """The vCPU id and vector range of platform ``key``'s architecture."""
    return ARCH_TARGETS[platform(key).arch]


def compose_fields(fields: tuple[BitField, ...], **values: int) -> int:
    """Build a value from ``fields``: fixed fields take their value, variable ones the named argument."""
    out = 0
    for f in fields:
        v = f.value if f.value is not None else values.pop(f.name)
        if v >> f.width:
            raise ValueError(f"{f.name} = {v:#x} does not fit bits {f.bits}")
        out |= v << f.lo
    if values:
        raise ValueError(f"no such field {', '.join(values)}")
    return out


def parse_fields(fields: tuple[BitField, ...], value: int) -> dict[str, int] | None:
    """The variable fields of ``value``, or None when a fixed field does not hold its value."""
    out = {}
    for f in fields:
        v = (value & f.mask) >> f.lo
        if f.value is None:
            out[f.name] = v
        elif v != f.value:
            return None
    return out
