"""Batches and the formats of MSG_ALLOC, MSG_RETARGET and MSG_FREE (spec sections "Messages", "Batches").

A batch input block is a :data:`BATCH_IN` header followed by ``count`` entries; the output block is a
:data:`BATCH_OUT` header followed by ``count`` results, result *i* answering entry *i*.
"""

from __future__ import annotations

from typing import Any

import construct as cs

from ..constants import DeliveryFlag, MsgKind, RetargetFlag, Status
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
    "IN entry of MSG_ALLOC: one message (or one multi-message MSI block) to allocate.",
    cs.Struct(
        "kind" / EnumField(u8, MsgKind) * "Where the guest will write the pair (PVMSI_KIND_*).",
        "flags" / FlagsField(u8, DeliveryFlag) * "PVMSI_DELIVER_* flags.",
        "vector_count" / u16 * "1 for MSI-X and IMS; 1..32, a power of two, for MSI.",
        "slot" / u32 * "MSI-X table index or IMS slot the guest will write; zero for MSI.",
        "vcpu" / u32 * "Target vCPU by architectural id: x86 APIC id, arm64 MPIDR affinity (Aff3.Aff2.Aff1.Aff0 "
        "in 32 bits), riscv64 hart id.",
        "vector" / u32 * "Guest vector: x86 vector, arm64 LPI INTID, riscv64 IMSIC identity; MSI: the first of "
        "vector_count.",
        "reserved0" / Reserved(u64) * "Reserved, zero.",
    ),
)

ALLOC_RESULT: Any = define(
    "alloc_result",
    "messages",
    "OUT result of MSG_ALLOC for one entry.",
    cs.Struct(
        "handle" / u64 * "Opaque, non-zero handle naming the message in RETARGET and FREE.",
        "address" / u64 * "Message address the guest writes into the device.",
        "data" / u32 * "Message data; for MSI the first of vector_count consecutive values.",
        "status" / ValuesOf(s32, Status) * "Status of this entry (SUCCESS, or the error that stopped the batch here).",
    ),
)

RETARGET_ENTRY: Any = define(
    "retarget_entry",
    "messages",
    "IN entry of MSG_RETARGET: move one message to another vCPU and vector.",
    cs.Struct(
        "handle" / u64 * "A handle this VM holds for the batch's device.",
        "vcpu" / u32 * "New target vCPU by architectural id (as for MSG_ALLOC).",
        "vector" / u32 * "New guest vector (MSI: the first of the block).",
        "flags" / FlagsField(u8, DeliveryFlag) * "PVMSI_DELIVER_* flags.",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "reserved1" / Reserved(u16) * "Reserved, zero.",
        "reserved2" / Reserved(u32) * "Reserved, zero.",
    ),
)

RETARGET_RESULT: Any = define(
    "retarget_result",
    "messages",
    "OUT result of MSG_RETARGET for one entry.",
    cs.Struct(
        "address" / u64 * "The message address now in force.",
        "data" / u32 * "The message data now in force.",
        "status" / ValuesOf(s32, Status) * "Status of this entry.",
        "flags" / FlagsField(u32, RetargetFlag) * "PVMSI_RETARGET_REWRITE when the guest must rewrite the device.",
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
    RETARGET_ENTRY,
    RETARGET_RESULT,
    FREE_ENTRY,
    FREE_RESULT,
)
