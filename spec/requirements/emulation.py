"""Requirements of the emulation boundary (spec "Device control", section "The emulation boundary").

What a claim can change on real hardware: configuration space (the MSI capability, MSI-X Message Control) stays
trapped for an assigned device under VFIO, QEMU and Xen's vPCI; only the MSI-X table and PBA can be mapped into
the guest (VFIO_REGION_INFO_CAP_MSIX_MAPPABLE).  So MSI follows the explicit model of PAPR's ``ibm,change-msi``:
the hypervisor writes the pair into the capability itself.
"""

from __future__ import annotations

from .model import Level, Requirement, req

REQUIREMENTS: tuple[Requirement, ...] = (
    req(
        "HV-EMU-001",
        Level.MUST,
        "device",
        "The hypervisor MUST keep trapping the guest's accesses to the MSI capability and the MSI-X capability "
        "(Message Control) in the configuration space of an assigned device, claimed or not, and MUST apply the "
        "guest's writes there only as HV-EMU-005 and HV-EMU-006 say.",
    ),
    req(
        "HV-EMU-002",
        Level.MUST,
        "device",
        "For each MSI message it allocates with PVMSI_ALLOC_ACTIVATE, MSG_ALLOC MUST write the pair it returns "
        "into the device's MSI capability (Message Address, Message Upper Address, Message Data) and set Multiple "
        "Message Enable to log2(vector_count) before the call returns, leaving MSI Enable as it was; a reservation "
        "writes nothing into the capability.",
    ),
    req(
        "HV-EMU-003",
        Level.MUST,
        "device",
        "When MSG_ACTIVATE returns a new pair for an MSI message (REWRITE set), the hypervisor MUST write that pair "
        "into the device's MSI capability, and Multiple Message Enable as HV-EMU-002 says, before the call returns.",
    ),
    req(
        "HV-EMU-004",
        Level.MUST,
        "device",
        "When an MSI message is freed (MSG_FREE, DEVICE_RELEASE, RESET, VM reset, hot-unplug), the hypervisor "
        "MUST clear MSI Enable, Message Address, Message Upper Address, Message Data and Multiple Message Enable of "
        "the device's MSI capability before the call or event completes.",
    ),
    req(
        "HV-EMU-005",
        Level.MUST,
        "device",
        "While MSI is claimed, the hypervisor MUST ignore the guest's writes to Message Address, Message Upper "
        "Address, Message Data and Multiple Message Enable of the MSI capability, and MUST apply the guest's writes "
        "to MSI Enable and the per-vector Mask Bits to the device; a read returns the device's registers.",
    ),
    req(
        "HV-EMU-006",
        Level.MUST,
        "device",
        "While MSI-X is claimed, the hypervisor MUST apply the guest's writes to MSI-X Enable and Function Mask in "
        "Message Control to the device, without changing the MSI-X table the guest wrote.",
    ),
    req(
        "HV-EMU-007",
        Level.MUST,
        "device",
        "After a function-level reset of a device with a claimed MSI message, the hypervisor MUST write that "
        "message's pair and Multiple Message Enable into the MSI capability again, MSI Enable left clear for the "
        "guest to set.",
    ),
    req(
        "GUEST-EMU-001",
        Level.MUST_NOT,
        "device",
        "The guest MUST NOT write Message Address, Message Upper Address, Message Data or Multiple Message Enable "
        "of an MSI capability it has claimed; it sets MSI Enable and the Mask Bits only, after MSG_ALLOC returned.",
    ),
    req(
        "GUEST-EMU-002",
        Level.MUST,
        "device",
        "For a message of a kind it has not claimed (pvmsi absent, of another major version, refused, or the kind "
        "not claimed), the guest MUST compose the pair its platform's emulated interrupt controller defines, as it "
        "would without pvmsi (x86-64: the compatibility format; arm64: its virtual ITS's GITS_TRANSLATER and an "
        "EventID it mapped; riscv64: an interrupt file of its virtual IMSIC and an interrupt identity), never a "
        "format pvmsi describes (hv_info.message_format describes only the pairs pvmsi returns).",
    ),
)
