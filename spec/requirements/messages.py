"""Requirements of the sections Reserve, activate, deactivate and free, and Batching and partial completion."""

from __future__ import annotations

from .model import Level, Requirement, req

MESSAGES: tuple[Requirement, ...] = (
    req(
        "HV-ALLOC-001",
        Level.MUST,
        "messages",
        "The hypervisor MUST fail MSG_ALLOC, MSG_ACTIVATE, MSG_DEACTIVATE and MSG_FREE with WRONG_STATE for a "
        "device that is not claimed, before processing any entry.",
    ),
    req(
        "HV-ALLOC-002",
        Level.MUST,
        "messages",
        "The hypervisor MUST fail an allocate entry with NOT_PERMITTED when its kind is not claimed for the device.",
    ),
    req(
        "HV-ALLOC-003",
        Level.MUST,
        "messages",
        "The hypervisor MUST fail an allocate entry with INVALID_PARAMETER when vector_count is not 1 for MSI-X "
        "or IMS, or, for MSI, not a power of two between 1 and the device's MSI vector count.",
    ),
    req(
        "HV-ALLOC-004",
        Level.MUST,
        "messages",
        "The hypervisor MUST fail an allocate entry with INVALID_PARAMETER when slot is not below the MSI-X "
        "table size (MSI-X) or is not zero (MSI). For IMS, slot is an opaque tag the guest chooses: the "
        "hypervisor MUST accept any value, using it only to keep a device's live messages apart (HV-ALLOC-005) "
        "and to park freed remapping entries (HV-QUOTA-004).",
    ),
    req(
        "HV-ALLOC-005",
        Level.MUST,
        "messages",
        "The hypervisor MUST fail an allocate entry with WRONG_STATE when its slot already holds a live message "
        "of the same kind.",
    ),
    req(
        "HV-ALLOC-006",
        Level.MUST,
        "messages",
        "The hypervisor MUST fail an activating allocate entry (PVMSI_ALLOC_ACTIVATE) or an activate entry with "
        "INVALID_PARAMETER when vcpu is not the "
        "architectural id of a vCPU of the VM (x86: APIC id; arm64: MPIDR affinity Aff3.Aff2.Aff1.Aff0 packed "
        "in 32 bits; riscv64: hart id), or when a vector of the entry (vector to vector + n - 1, n the vectors "
        "the entry targets) is "
        "outside the architecture's range (x86: 32 to 255; arm64: LPI INTIDs 8192 to 2^IDbits - 1 of the "
        "vGIC; riscv64: identities 1 to N of the VM's IMSIC interrupt files).",
    ),
    req(
        "HV-ALLOC-007",
        Level.MUST,
        "messages",
        "On success the hypervisor MUST return a non-zero handle; for an activating allocate entry "
        "(PVMSI_ALLOC_ACTIVATE) it MUST also return an address and a data value and have programmed interrupt "
        "remapping so that the pair, written by the device, delivers the given vector to the given vCPU of the "
        "calling VM.",
    ),
    req(
        "HV-ALLOC-008",
        Level.MUST,
        "messages",
        "For an MSI block of n vectors the hypervisor MUST return (from MSG_ALLOC with PVMSI_ALLOC_ACTIVATE and "
        "from MSG_ACTIVATE) a data value whose low log2(n) bits are zero, such that data | i delivers the target "
        "of vector i of the block (vector + i after a block-wide activation) for every i below n.",
    ),
    req(
        "HV-ALLOC-009",
        Level.MUST,
        "messages",
        "The hypervisor MUST account an MSI block of n vectors as n vectors against every quota.",
    ),
    req(
        "HV-RETGT-001",
        Level.MUST,
        "messages",
        "The hypervisor MUST fail an activate entry with UNKNOWN_HANDLE when the handle is not held by the "
        "calling VM for the batch's device.",
    ),
    req(
        "HV-RETGT-002",
        Level.MUST,
        "messages",
        "On success of an activate entry the hypervisor MUST deliver every later message of the vectors it "
        "names (vector index, or every vector with PVMSI_ACTENT_BLOCK) to the entry's vCPU and vector, whether "
        "the message was reserved or active, and return the address/data pair now in force.",
    ),
    req(
        "HV-RETGT-003",
        Level.MUST,
        "messages",
        "The hypervisor MUST set PVMSI_ACTIVATE_REWRITE in an activate result exactly when no vector of the "
        "message was active before the entry (a reserved message has no pair in force) or the returned pair "
        "differs from the pair in force before it.",
    ),
    req(
        "HV-RETGT-004",
        Level.SHOULD,
        "messages",
        "Where the platform's interrupt remapping allows it (VT-d, AMD-Vi and the GIC ITS always; the RISC-V "
        "IMSIC only when the vCPU stays), the hypervisor SHOULD change an active message's target in place, "
        "keeping the address/data pair, so that the device need not be rewritten.",
    ),
    req(
        "HV-FREE-001",
        Level.MUST,
        "messages",
        "The hypervisor MUST fail a free entry with UNKNOWN_HANDLE when the handle is not held by the calling VM "
        "for the batch's device; freeing is the owner's alone. A reserved message and an active one are freed "
        "alike.",
    ),
    req(
        "HV-FREE-002",
        Level.MUST,
        "messages",
        "On freeing a message the hypervisor MUST revoke its remapping entry, so that a later write of its pair "
        "is blocked, and MUST return its vectors to the quotas.",
    ),
    req(
        "GUEST-ALLOC-001",
        Level.MUST,
        "messages",
        "The guest MUST write each returned pair into the slot the entry named (MSI: the MSI capability with "
        "Multiple Message Enable for vector_count) before it enables or unmasks that slot.",
    ),
    req(
        "GUEST-ALLOC-002",
        Level.MUST,
        "messages",
        "When an activate result has PVMSI_ACTIVATE_REWRITE set for an MSI-X or IMS message, the guest MUST write "
        "the new pair into the device, masking the slot while it does so (a claimed MSI capability the hypervisor "
        "writes itself, HV-EMU-003), unless it refuses the pair under GUEST-CVM-002 and frees the message "
        "instead. Wherever the guest itself rewrites the pair of an enabled MSI block (a kind "
        "it has not claimed, retargeted under emulation), it MUST mask every vector of the block while it does so: "
        "every Mask Bit of the block's vectors (on the harness: MASK of MSI slot 0), not one vector nor none.",
    ),
    req(
        "GUEST-ALLOC-003",
        Level.SHOULD,
        "messages",
        "The guest SHOULD mask a slot, or clear it, before it frees the slot's message.",
    ),
    req(
        "GUEST-ALLOC-004",
        Level.MUST_NOT,
        "messages",
        "The guest MUST NOT use a handle after freeing it, after releasing its device, after RESET, or after "
        "its device was hot-unplugged.",
    ),
    req(
        "GUEST-ALLOC-005",
        Level.SHOULD_NOT,
        "messages",
        "When an activate result has PVMSI_ACTIVATE_REWRITE clear, the guest SHOULD NOT write the slot: the pair "
        "in force is the one already there (the result's address and data repeat it), and a guest that writes "
        "anyway writes that same pair (GUEST-NEG-004).",
    ),
)

BATCH: tuple[Requirement, ...] = (
    req(
        "HV-BATCH-001",
        Level.MUST,
        "batch",
        "The hypervisor MUST fail a batch with INVALID_PARAMETER when count is zero or above its batch limit (the "
        "smaller of hv_info.max_batch and what one page holds for the call: the call's max_batch), or start is "
        "not below count, before processing any entry; it MUST accept a count equal to that limit.",
    ),
    req(
        "HV-BATCH-002",
        Level.MUST,
        "batch",
        "The hypervisor MUST process the entries from start in order and stop at the first entry that fails, "
        "writing that entry's status in its result and in batch_out.status, its index in "
        "batch_out.next_index, and returning that status.",
    ),
    req(
        "HV-BATCH-003",
        Level.MUST,
        "batch",
        "The entries completed before a failing entry MUST stay completed, with their results written.",
    ),
    req(
        "HV-BATCH-004",
        Level.MUST_NOT,
        "batch",
        "The hypervisor MUST NOT process, nor write the result of, any entry after the failing one or below start.",
    ),
    req(
        "HV-BATCH-005",
        Level.MAY,
        "batch",
        "The hypervisor MAY stop a batch before its end without an error, returning INCOMPLETE with "
        "next_index at the first entry not processed.",
    ),
    req(
        "HV-BATCH-006",
        Level.MUST,
        "batch",
        "The hypervisor MUST complete at least one entry in every call that returns INCOMPLETE.",
    ),
    req(
        "HV-BATCH-007",
        Level.MUST,
        "batch",
        "On completing every entry the hypervisor MUST return SUCCESS with next_index equal to count; whenever "
        "batch_out is written, completed MUST equal next_index minus start, batch_out.status MUST equal the status "
        "returned and the value register MUST equal next_index.",
    ),
    req(
        "HV-BATCH-008",
        Level.MUST,
        "batch",
        "The hypervisor MUST treat a resumed batch (start above zero) as an ordinary call, keeping no state "
        "between the calls of one batch.",
    ),
    req(
        "GUEST-BATCH-001",
        Level.MUST,
        "batch",
        "On INCOMPLETE the guest MUST re-issue the batch with start set to next_index, until it completes or fails.",
    ),
    req(
        "GUEST-BATCH-002",
        Level.MUST,
        "batch",
        "When a batch fails, the guest MUST treat the entries below next_index as completed (and free what it "
        "abandons), and the failing entry and those after it as not processed.",
    ),
    req(
        "GUEST-REFUSE-002",
        Level.MUST_NOT,
        "batch",
        "The guest MUST NOT take from a batch call more than it sent: an answer whose next_index (the value "
        "register, or batch_out.next_index) is above count (one past included), below start, not count on "
        "SUCCESS, or not between start and count (exclusive) on INCOMPLETE answers no batch the guest issued, and so "
        "does an MSG_ALLOC answer whose completed results name a handle that is zero, named twice, or one the "
        "guest already holds. The "
        "guest then uses no result of that call (no handle, no pair), does not resume it, frees what earlier calls "
        "of the operation completed (GUEST-BATCH-002), and fails the command with INVALID_PARAMETER.",
    ),
)

REQUIREMENTS: tuple[Requirement, ...] = MESSAGES + BATCH
