"""Requirements of the sections Memory rules and Security considerations."""

from __future__ import annotations

from .model import Level, Requirement, req

MEMORY: tuple[Requirement, ...] = (
    req(
        "GUEST-MEM-001",
        Level.MUST,
        "memory",
        "The guest MUST place every parameter block at an 8-byte-aligned guest physical address in guest RAM, "
        "such that the block does not cross a 4 KiB page boundary.",
    ),
    req(
        "GUEST-MEM-002",
        Level.MUST_NOT,
        "memory",
        "The guest MUST NOT let the input and output blocks of one call overlap.",
    ),
    req(
        "HV-MEM-001",
        Level.MUST,
        "memory",
        "The hypervisor MUST fail with INVALID_ADDRESS a call whose block address is not 8-byte aligned.",
    ),
    req(
        "HV-MEM-002",
        Level.MUST,
        "memory",
        "The hypervisor MUST fail with INVALID_ADDRESS a call whose block, of the size the call defines (for a "
        "batch: header plus count entries or results), crosses a 4 KiB page boundary.",
    ),
    req(
        "HV-MEM-003",
        Level.MUST,
        "memory",
        "The hypervisor MUST fail with INVALID_ADDRESS a call whose block is not entirely in guest RAM.",
    ),
    req(
        "HV-MEM-004",
        Level.MUST,
        "memory",
        "The hypervisor MUST fail with INVALID_ADDRESS a call whose input and output blocks overlap.",
    ),
    req(
        "HV-MEM-005",
        Level.MUST,
        "memory",
        "The hypervisor MUST read each byte of an input block at most once per call, and act only on the "
        "values it read (no double fetch).",
    ),
    req(
        "HV-MEM-006",
        Level.MUST_NOT,
        "memory",
        "The hypervisor MUST NOT write guest memory outside the output block of a call, and MUST NOT write the "
        "output block of a call that failed before its first entry, except as NEGOTIATE and the batch header "
        "rules say.",
    ),
    req(
        "HV-MEM-007",
        Level.MUST,
        "memory",
        "The hypervisor MUST write batch_out of a batch call whenever the batch header passed every header check "
        "of the call's check order (its address, contents, count and start, device, claim and, last, the "
        "addresses of both whole blocks), whatever the outcome of the entries, and MUST NOT write it otherwise.",
    ),
)

SECURITY: tuple[Requirement, ...] = (
    req(
        "HV-SEC-001",
        Level.MUST,
        "security",
        "A message handed to a VM MUST deliver only into that VM, to the vCPU and vector its owner last set.",
    ),
    req(
        "HV-SEC-002",
        Level.MUST,
        "security",
        "The hypervisor MUST program source validation so that a message is delivered only when written with "
        "the segment and requester id of the device it was allocated for (VT-d: IRTE SVT=01b, SQ=00b, SID; "
        "AMD-Vi and GIC ITS: the DeviceID's table); a write of the pair with any other requester id MUST be "
        "blocked. A PASID on the write is not a source: the hypervisor MUST NOT rely on one to isolate messages.",
    ),
    req(
        "HV-SEC-003",
        Level.MUST,
        "security",
        "Handles MUST be owner-checked: a handle is valid only for the VM and device it was allocated for, and "
        "the answer to another VM's handle MUST be the same as to a handle never issued (UNKNOWN_HANDLE).",
    ),
    req(
        "HV-SEC-004",
        Level.SHOULD,
        "security",
        "Handles SHOULD be unguessable, carrying at least 32 bits that a guest cannot predict.",
    ),
    req(
        "HV-SEC-005",
        Level.MUST_NOT,
        "security",
        "The hypervisor MUST NOT reissue a handle value to the same VM during its life.",
    ),
    req(
        "HV-SEC-006",
        Level.MUST,
        "security",
        "The hypervisor MUST enforce the per-VM and per-device quotas it reports in GET_INFO and DEVICE_QUERY, "
        "failing an allocate entry that would exceed one with NO_RESOURCES.",
    ),
    req(
        "HV-SEC-007",
        Level.MUST,
        "security",
        "The hypervisor MUST fail an allocate entry with NO_RESOURCES when the VM's share of the interrupt-remapping "
        "table (or the table) has no room, allocating nothing for that entry.",
    ),
    req(
        "HV-SEC-008",
        Level.MUST_NOT,
        "security",
        "The hypervisor MUST NOT reveal host state through pvmsi: output reserved fields are zero, registers "
        "not defined as results keep their values, and a pair carries only what the platform's remapping needs, "
        "never a host vector or host physical address.",
    ),
    req(
        "HV-SEC-009",
        Level.MUST,
        "security",
        "The hypervisor MUST free every message, remapping entry and quota a VM holds when the VM is destroyed.",
    ),
    req(
        "HV-SEC-010",
        Level.MUST,
        "security",
        "The hypervisor MUST assign a function and every sub-device that shares its requester id to one VM, and "
        "MUST set PVMSI_DEV_SHARED_SOURCE in DEVICE_QUERY for each of them (the function and its sub-devices "
        "when it has any): their messages are isolated from other requester ids, not from each other.",
    ),
    req(
        "HV-SEC-011",
        Level.MUST,
        "security",
        "A sub-device id MUST be the guest's PASID (the guest's namespace, from its vIOMMU); the hypervisor MUST "
        "translate it to the host PASID itself and MUST answer a sub-device id the guest does not own as a "
        "device that does not exist (UNKNOWN_DEVICE), and MUST NOT reveal a host PASID.",
    ),
    req(
        "HV-QUOTA-001",
        Level.MUST,
        "security",
        "The hypervisor MUST give each VM a share of every interrupt-remapping table its messages use that no other "
        "VM can take: the shares of the VMs it runs at once MUST NOT add up to more than the table (the host "
        "administrator sets them, at most the table's entries divided by the VMs the host admits), GET_INFO's "
        "max_messages_per_vm MUST NOT exceed the VM's share, and an allocation within the VM's quotas MUST NOT "
        "fail with NO_RESOURCES because of what other VMs hold.",
    ),
    req(
        "HV-QUOTA-002",
        Level.MUST,
        "security",
        "Every remapping entry the hypervisor programs for a VM MUST count against that VM's share, whether it is "
        "for a pvmsi message or for an MSI/MSI-X vector it emulates. When an emulated vector takes its entry (at "
        "the guest's table or capability write, at unmask or at enable) is the hypervisor's choice; the guest can "
        "rely on this much: an emulated vector that is live (its kind enabled, the vector unmasked, holding a pair "
        "the hypervisor honours) holds exactly one entry of the share, and once the kind is disabled again (MSI or "
        "MSI-X Enable clear) or the device reset, none of that kind's emulated vectors holds one. The reference "
        "takes the entry when the vector becomes live and returns it when it stops being live.",
    ),
    req(
        "HV-QUOTA-003",
        Level.MUST,
        "security",
        "What other VMs allocate or free MUST NOT change what a VM observes of pvmsi: the statuses of its calls, "
        "its quotas and headroom (GET_INFO, DEVICE_QUERY), and whether a pair it is given repeats one it was "
        "given before. The exact pairs and handles MAY differ with the host's state (a VT-d remapping index is "
        "host-global), but MUST NOT let the VM learn what other VMs hold or do: for example, the hypervisor "
        "allocates inside the VM's own share, lowest free entry first, and draws handles it never reissues.",
    ),
    req(
        "HV-QUOTA-004",
        Level.MUST_NOT,
        "security",
        "After a message is freed, the hypervisor MUST NOT program its remapping entries for a message of another "
        "slot of the same requester id until that device has been reset (FLR, VM reset) or removed; until then "
        "the entries stay charged to the VM's share (DEVICE_QUERY's headroom counts them, HV-HEADROOM-001), and "
        "they may be reissued for the same slot only. This holds for every freed message, a reservation that was "
        "never activated included: its entries are kept and charged the same way. On the RISC-V "
        "IMSIC a pair names the VM's own interrupt file and an identity the guest chose, not a remapping entry: "
        "there is nothing to withhold, and a stale copy can raise only that identity on the guest's own hart.",
    ),
    req(
        "GUEST-SEC-001",
        Level.MUST_NOT,
        "security",
        "The guest MUST NOT write into a device a pair it did not obtain for that device.",
    ),
    req(
        "GUEST-SEC-002",
        Level.SHOULD_NOT,
        "security",
        "The guest SHOULD NOT hand sub-devices of a PVMSI_DEV_SHARED_SOURCE device to parties it does not trust "
        "with each other's interrupts (nested guests, user space): their messages are not isolated.",
    ),
)

REQUIREMENTS: tuple[Requirement, ...] = MEMORY + SECURITY
