"""Requirements of the section Allocate, retarget and free on messages in flight: raised by the device before or
while a call changes their remapping, and delivered after it (spec "Allocate, retarget and free", "Messages in
flight").  Migration's window is the migration section's."""

from __future__ import annotations

from .model import Level, Requirement, req

REQUIREMENTS: tuple[Requirement, ...] = (
    req(
        "HV-FLIGHT-001",
        Level.MUST,
        "messages",
        "A message raised by the device before or during an MSG_ACTIVATE of its message and not yet delivered when "
        "the call returns MUST be delivered exactly once, to the old or the new target; where the hypervisor posts "
        "interrupts (VT-d posted interrupts, AMD-Vi guest virtual APIC, GICv4 vLPIs), a request already posted for "
        "the old vCPU MUST be delivered to it or moved to the new one, never dropped and never both; where the "
        "retarget changes the pair (REWRITE: the RISC-V IMSIC, another hart's interrupt file), the old pair, which "
        "the device writes until the guest has rewritten it, MUST keep delivering to the old target until the "
        "message is retargeted again or freed.",
    ),
    req(
        "HV-FLIGHT-002",
        Level.MUST_NOT,
        "messages",
        "Once MSG_FREE, DEVICE_RELEASE, RESET or a VM reset has returned or completed, a message of a message it "
        "freed MUST NOT be delivered to any other VM, and MUST NOT be delivered to the VM, whenever the device "
        "raised it: its remapping entry is revoked, and every cached copy invalidated, before the call returns. "
        "On the RISC-V IMSIC a pair names the VM's own interrupt file and an identity the guest chose, not an "
        "entry (HV-QUOTA-004): while the device's MSI page table maps that file for another message of the VM, a "
        "late write can raise only that identity on that hart of the same VM.",
    ),
)
