"""Batches and the formats of MSG_ALLOC, MSG_ACTIVATE, MSG_DEACTIVATE and MSG_FREE (spec "Messages", "Batches").

A batch input block is a :data:`BATCH_IN` header followed by ``count`` entries; the output block is a
:data:`BATCH_OUT` header followed by ``count`` results, result *i* answering entry *i*.
"""

from __future__ import annotations

from typing import Any

import construct as cs

from ..constants import ActivateEntryFlag, ActivateFlag, AllocFlag, DeliveryFlag, MsgKind, Status
from ..fields import EnumField, FlagsField, Reserved, ValuesOf, define, s32, u8, u16, u32, u64
from .device import DEVICE_ID

BATCH_IN: Any = define(
    "batch_in",
    "batch",
    "Header of every batch input block; count entries follow it directly.",
    cs.Struct(
        "device" / DEVICE_ID * "The device every entry of the batch concerns.",
        "count" / u16 * 'Entries following this header: 1 up to the call\'s batch limit (spec "Batching").',
        "start" / u16 * "Index of the first entry to process: 0 at first, next_index when resuming.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
        "reserved1" / Reserved(u64) * "Reserved, zero.",
    ),
)

BATCH_OUT: Any = define(
    "batch_out",
    "batch",
    "Header of every batch output block; count results follow it directly.",
    cs.Struct(
        "next_index" / u16 * "First entry not completed; equals count when the batch is done.",
        "completed" / u16 * "Entries completed by this call (next_index - start).",
        "status"
        / ValuesOf(s32, Status)
        * "Status of entry next_index if the batch stopped on an error; SUCCESS otherwise.",
        "reserved0" / Reserved(u64) * "Reserved, zero.",
    ),
)

ALLOC_ENTRY: Any = define(
    "alloc_entry",
    "messages",
    "IN entry of MSG_ALLOC: one message (or one multi-message MSI block) to reserve, and with "
    "PVMSI_ALLOC_ACTIVATE to activate as well.",
    cs.Struct(
        "kind" / EnumField(u8, MsgKind) * "Where the guest will write the pair (PVMSI_KIND_*).",
        "flags" / FlagsField(u8, DeliveryFlag) * "PVMSI_DELIVER_* flags (with PVMSI_ALLOC_ACTIVATE; else zero).",
        "vector_count" / u16 * "1 for MSI-X and IMS; 1..32, a power of two, for MSI.",
        "slot" / u32 * "MSI-X table index; for IMS an opaque tag the guest chooses, unique per device; zero for MSI.",
        "vcpu" / u32 * "With PVMSI_ALLOC_ACTIVATE: target vCPU by architectural id: x86 APIC id, arm64 MPIDR "
        "affinity (Aff3.Aff2.Aff1.Aff0 in 32 bits), riscv64 hart id. Without it: zero.",
        "vector" / u32 * "With PVMSI_ALLOC_ACTIVATE: guest vector: x86 vector, arm64 LPI INTID, riscv64 IMSIC "
        "identity; MSI: the first of vector_count. Without it: zero.",
        "alloc_flags" / FlagsField(u8, AllocFlag) * "PVMSI_ALLOC_* flags.",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "reserved1" / Reserved(u16) * "Reserved, zero.",
        "hint_vcpu" / u32 * "With PVMSI_ALLOC_LOCALITY_HINT: the vCPU (architectural id) the guest expects to "
        "target, a hint that binds nothing. Without it: zero.",
    ),
)

ALLOC_RESULT: Any = define(
    "alloc_result",
    "messages",
    "OUT result of MSG_ALLOC for one entry.",
    cs.Struct(
        "handle" / u64 * "Opaque, non-zero handle naming the message in MSG_ACTIVATE, MSG_DEACTIVATE and MSG_FREE.",
        "address" / u64 * "With PVMSI_ALLOC_ACTIVATE: the message address the guest writes into the device; "
        "zero for a reservation (no pair is in force until MSG_ACTIVATE).",
        "data" / u32 * "With PVMSI_ALLOC_ACTIVATE: the message data (for MSI the first of vector_count values); "
        "zero for a reservation.",
        "status" / ValuesOf(s32, Status) * "Status of this entry (SUCCESS, or the error that stopped the batch here).",
    ),
)

ACTIVATE_ENTRY: Any = define(
    "activate_entry",
    "messages",
    "IN entry of MSG_ACTIVATE: set the target of a reserved message, or change that of an active one; for a "
    "multi-message MSI block, of one vector (index) or of the whole block (PVMSI_ACTENT_BLOCK).",
    cs.Struct(
        "handle" / u64 * "A handle this VM holds for the batch's device.",
        "vcpu" / u32 * "Target vCPU by architectural id (as for MSG_ALLOC).",
        "vector" / u32 * "Guest vector of vector index (with PVMSI_ACTENT_BLOCK: of vector 0, vector i getting "
        "vector + i).",
        "flags" / FlagsField(u8, DeliveryFlag) * "PVMSI_DELIVER_* flags.",
        "entry_flags" / FlagsField(u8, ActivateEntryFlag) * "PVMSI_ACTENT_* flags.",
        "index" / u16 * "The vector of the message the entry targets: 0..vector_count-1 of an MSI block, 0 for "
        "MSI-X and IMS; zero with PVMSI_ACTENT_BLOCK.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
    ),
)

ACTIVATE_RESULT: Any = define(
    "activate_result",
    "messages",
    "OUT result of MSG_ACTIVATE for one entry.",
    cs.Struct(
        "address" / u64 * "The message address now in force.",
        "data" / u32 * "The message data now in force (for MSI, of vector 0 of the block).",
        "status" / ValuesOf(s32, Status) * "Status of this entry.",
        "flags" / FlagsField(u32, ActivateFlag) * "PVMSI_ACTIVATE_REWRITE when the guest must write the pair.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
    ),
)

DEACTIVATE_ENTRY: Any = define(
    "deactivate_entry",
    "messages",
    "IN entry of MSG_DEACTIVATE: return an active message (one vector, or the whole block) to reserved.",
    cs.Struct(
        "handle" / u64 * "A handle this VM holds for the batch's device.",
        "index" / u16 * "The vector of the message (0..vector_count-1; 0 for MSI-X and IMS); zero with "
        "PVMSI_ACTENT_BLOCK.",
        "entry_flags" / FlagsField(u8, ActivateEntryFlag) * "PVMSI_ACTENT_* flags.",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "reserved1" / Reserved(u32) * "Reserved, zero.",
    ),
)

DEACTIVATE_RESULT: Any = define(
    "deactivate_result",
    "messages",
    "OUT result of MSG_DEACTIVATE for one entry.",
    cs.Struct(
        "status" / ValuesOf(s32, Status) * "Status of this entry.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
    ),
)

FREE_ENTRY: Any = define(
    "free_entry",
    "messages",
    "IN entry of MSG_FREE: one message to free.",
    cs.Struct(
        "handle" / u64 * "A handle this VM holds for the batch's device.",
    ),
)

FREE_RESULT: Any = define(
    "free_result",
    "messages",
    "OUT result of MSG_FREE for one entry.",
    cs.Struct(
        "status" / ValuesOf(s32, Status) * "Status of this entry.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
    ),
)

#: The formats of this module, in definition order (:mod:`pvmsi.spec.formats` registers them).
DEFINED: tuple[Any, ...] = (
    BATCH_IN,
    BATCH_OUT,
    ALLOC_ENTRY,
    ALLOC_RESULT,
    ACTIVATE_ENTRY,
    ACTIVATE_RESULT,
    FREE_ENTRY,
    FREE_RESULT,
    DEACTIVATE_ENTRY,
    DEACTIVATE_RESULT,
)
