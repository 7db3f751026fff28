"""Named records of the batch formats (spec "Batching and partial completion", "Reserve, activate, deactivate and
free").

Each record is a :class:`~typing.NamedTuple` of its format's leaf fields in layout order, a nested field's path
joined with ``_`` (``device.bus`` is ``device_bus``); a field not given is zero, as in a zeroed block.  The
records are built from the layouts when this module is imported, so an edit to a format in spec/formats (a
field renamed, two fields swapped) needs no edit here: :meth:`.fastcodec.FastFormat.unpack_record_from` decodes
a block straight into its record and ``FastFormat.pack(*record)`` encodes one, both in layout order.

The classes under ``TYPE_CHECKING`` are for the type checker only (attribute names and types);
``tests/test_hooks.py`` holds their field names to the layouts.
"""

from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING, Any, NamedTuple

from .layout import format_layout


def record_type(name: str) -> type[tuple[Any, ...]]:
    """The named record of format ``name``: one field per leaf, in layout order, each defaulting to zero."""
    layout = format_layout(name)
    fields = [leaf.path.replace(".", "_") for leaf in layout.leaves()]
    title = "".join(part.capitalize() for part in name.split("_"))
    record: type[tuple[Any, ...]] = namedtuple(title, fields, defaults=[0] * len(fields))  # type: ignore[misc]
    record.__doc__ = f"``{name}``: {layout.doc}"
    return record


#: The formats that have a named record.
RECORD_FORMATS = (
    "batch_in",
    "batch_out",
    "alloc_entry",
    "alloc_result",
    "activate_entry",
    "activate_result",
    "free_entry",
    "free_result",
    "deactivate_entry",
    "deactivate_result",
)

if TYPE_CHECKING:
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
        alloc_flags: int = 0
        reserved0: int = 0
        reserved1: int = 0
        hint_vcpu: int = 0

    class AllocResult(NamedTuple):
        """``alloc_result``: the handle and pair of an allocated message, or the entry's status."""

        handle: int = 0
        address: int = 0
        data: int = 0
        status: int = 0

    # Functional form, as for BatchIn: the field ``index`` would override tuple.index in the class form.
    ActivateEntry = NamedTuple(  # noqa: UP014
        "ActivateEntry",
        [
            ("handle", int),
            ("vcpu", int),
            ("vector", int),
            ("flags", int),
            ("entry_flags", int),
            ("index", int),
            ("reserved0", int),
        ],
    )

    class ActivateResult(NamedTuple):
        """``activate_result``: the pair in force after an activation, and whether the device must be rewritten."""

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

    DeactivateEntry = NamedTuple(  # noqa: UP014
        "DeactivateEntry",
        [("handle", int), ("index", int), ("entry_flags", int), ("reserved0", int), ("reserved1", int)],
    )

    class DeactivateResult(NamedTuple):
        """``deactivate_result``: the status of one deactivated message."""

        status: int = 0
        reserved0: int = 0

else:
    (
        BatchIn,
        BatchOut,
        AllocEntry,
        AllocResult,
        ActivateEntry,
        ActivateResult,
        FreeEntry,
        FreeResult,
        DeactivateEntry,
        DeactivateResult,
    ) = map(record_type, RECORD_FORMATS)

#: The named record of each format that has one, by format name.
RECORDS: dict[str, type[tuple[Any, ...]]] = {
    name: record
    for name, record in zip(
        RECORD_FORMATS,
        (
            BatchIn,
            BatchOut,
            AllocEntry,
            AllocResult,
            ActivateEntry,
            ActivateResult,
            FreeEntry,
            FreeResult,
            DeactivateEntry,
            DeactivateResult,
        ),
        strict=True,
    )
}
