"""Named records of the batch formats (spec "Batching and partial completion", "Allocate, retarget and free").

Each record is a :class:`~typing.NamedTuple` whose fields are its format's leaf fields in layout order, a nested
field's path joined with ``_`` (``device.bus`` is ``device_bus``).  :meth:`.fastcodec.FastFormat.unpack_record_from`
decodes a block straight into its record, and ``FastFormat.pack(*record)`` encodes one.  A field not given is
zero, as in a zeroed block.  ``tests/test_records.py`` proves every record matches its format's layout.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# The functional form (hence the noqa): in the class form, mypy takes the field ``count`` for an override of
# tuple.count.
BatchIn = NamedTuple(  # noqa: UP014
    "BatchIn",
    [
        ("device_segment", int),
        ("device_bus", int),
        ("device_devfn", int),
        ("device_flags", int),
        ("device_subdevice_id", int),
        ("device_reserved0", int),
        ("count", int),
        ("start", int),
        ("reserved0", int),
        ("reserved1", int),
    ],
)
BatchIn.__doc__ = "``batch_in``: the header of a batch's input block."


class BatchOut(NamedTuple):
    """``batch_out``: the header of a batch's output block."""

    next_index: int = 0
    completed: int = 0
    status: int = 0
    reserved0: int = 0


class AllocEntry(NamedTuple):
    """``alloc_entry``: one message to allocate."""

    kind: int = 0
    flags: int = 0
    vector_count: int = 0
    slot: int = 0
    vcpu: int = 0
    vector: int = 0
    reserved0: int = 0


class AllocResult(NamedTuple):
    """``alloc_result``: the handle and pair of an allocated message, or the entry's status."""

    handle: int = 0
    address: int = 0
    data: int = 0
    status: int = 0


class RetargetEntry(NamedTuple):
    """``retarget_entry``: a message to move to another vCPU and vector."""

    handle: int = 0
    vcpu: int = 0
    vector: int = 0
    flags: int = 0
    reserved0: int = 0
    reserved1: int = 0
    reserved2: int = 0


class RetargetResult(NamedTuple):
    """``retarget_result``: the pair in force after a retarget, and whether the device must be rewritten."""

    address: int = 0
    data: int = 0
    status: int = 0
    flags: int = 0
    reserved0: int = 0


class FreeEntry(NamedTuple):
    """``free_entry``: a message to free."""

    handle: int = 0


class FreeResult(NamedTuple):
    """``free_result``: the status of one freed message."""

    status: int = 0
    reserved0: int = 0


#: The named record of each format that has one, by format name.
RECORDS: dict[str, type[tuple[Any, ...]]] = {
    "batch_in": BatchIn,
    "batch_out": BatchOut,
    "alloc_entry": AllocEntry,
    "alloc_result": AllocResult,
    "retarget_entry": RetargetEntry,
    "retarget_result": RetargetResult,
    "free_entry": FreeEntry,
    "free_result": FreeResult,
}
