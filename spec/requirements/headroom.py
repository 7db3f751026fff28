"""Requirements of the section Device control on headroom: how many more vectors a VM and a device can be
allocated now (DEVICE_QUERY's vm_messages_available and messages_available)."""

from __future__ import annotations

from .model import Level, Requirement, req

REQUIREMENTS: tuple[Requirement, ...] = (
    req(
        "HV-HEADROOM-001",
        Level.MUST,
        "device",
        "DEVICE_QUERY MUST report in vm_messages_available how many more vectors the calling VM can be allocated "
        "now: max_messages_per_vm less the vectors the VM holds, at most the entries left in its share of the "
        "remapping table, which its emulated vectors and the entries kept for freed slots also take (HV-QUOTA-002, "
        "HV-QUOTA-004); and in messages_available how many more the device can: message_quota less "
        "messages_allocated, at most vm_messages_available. Neither depends on what other VMs hold.",
    ),
    req(
        "HV-HEADROOM-002",
        Level.MUST,
        "device",
        "An MSG_ALLOC of single-vector messages for as many slots as messages_available reports, slots that held no "
        "message since the device's last reset, with nothing allocated meanwhile, MUST NOT fail with NO_RESOURCES; "
        "with messages_available zero it MUST fail with NO_RESOURCES.",
    ),
)
