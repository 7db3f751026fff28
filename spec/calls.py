"""The calls of pvmsi 1.0: function number, parameter blocks, register meaning (spec "Calls").

Every call takes four argument registers and returns a status and one value register (see
:mod:`.callconv` for which physical registers those are).  ``arg0`` is the guest physical address (GPA) of the
input block and ``arg1`` that of the output block; a call without such a block requires the register to be zero,
as it requires ``arg2`` and ``arg3`` to be zero (HV-CALL-003).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .constants import FunctionNumber, Limit
from .formats import FORMATS
from .layout import format_layout
from .states import VmState

ANY_STATE = (VmState.OPEN, VmState.NEGOTIATED)

NO_BLOCK = "reserved, must be zero"


@dataclass(frozen=True)
class CallDef:
    """One call: its number, its parameter blocks and the meaning of its registers."""

    name: str
    fn: FunctionNumber
    doc: str
    input: str | None = None
    output: str | None = None
    input_entry: str | None = None
    output_entry: str | None = None
    value: str = "zero"
    #: VM states the call is valid in; in any other it fails with WRONG_STATE (HV-STATE-001).
    states: tuple[VmState, ...] = (VmState.NEGOTIATED,)

    @property
    def needs_negotiation(self) -> bool:
        return VmState.OPEN not in self.states

    @property
    def batched(self) -> bool:
        """A batch call (spec "Batching and partial completion"): a header, then ``count`` entries."""
        return self.input_entry is not None

    @cached_property
    def max_batch(self) -> int | None:
        """The most entries one batch of this call may carry (spec "Batching and partial completion"): what one
        page holds of its input entries after the input header, or of its results after the output header,
        whichever is fewer; None for a call that is not a batch."""
        if self.input_entry is None or self.output_entry is None or self.input is None or self.output is None:
            return None
        page = int(Limit.PAGE_SIZE)
        inputs = (page - format_layout(self.input).size) // format_layout(self.input_entry).size
        outputs = (page - format_layout(self.output).size) // format_layout(self.output_entry).size
        return min(inputs, outputs)

    @property
    def c_max_batch(self) -> str:
        """The C name of :attr:`max_batch`."""
        return f"PVMSI_{self.name}_MAX_BATCH"

    @property
    def input_format(self) -> Any:
        """The construct ``Struct`` of the input block (its header, for a batch), or None."""
        return FORMATS[self.input].struct if self.input else None

    @property
    def output_format(self) -> Any:
        """The construct ``Struct`` of the output block (its header, for a batch), or None."""
        return FORMATS[self.output].struct if self.output else None

    @property
    def entry_format(self) -> Any:
        """The construct ``Struct`` of one input entry of a batch call, or None."""
        return FORMATS[self.input_entry].struct if self.input_entry else None

    @property
    def result_format(self) -> Any:
        """The construct ``Struct`` of one result of a batch call, or None."""
        return FORMATS[self.output_entry].struct if self.output_entry else None

    @property
    def c_name(self) -> str:
        return f"PVMSI_FN_{self.name}"

    @property
    def args(self) -> tuple[str, str, str, str]:
        in_arg = "GPA of the input block" if self.input else NO_BLOCK
        out_arg = "GPA of the output block" if self.output else NO_BLOCK
        return (in_arg, out_arg, NO_BLOCK, NO_BLOCK)


CALLS: tuple[CallDef, ...] = (
    CallDef(
        "VERSION",
        FunctionNumber.VERSION,
        "Return the highest protocol version the hypervisor implements. Valid in every state, before and "
        "after negotiation; it changes no state.",
        value="major << 16 | minor of the highest version implemented",
        states=ANY_STATE,
    ),
    CallDef(
        "GET_INFO",
        FunctionNumber.GET_INFO,
        "Write the offered and required features and the hypervisor's limits to the output block. Valid in "
        "every state; it changes no state.",
        output="hv_info",
        states=ANY_STATE,
    ),
    CallDef(
        "NEGOTIATE",
        FunctionNumber.NEGOTIATE,
        "Accept a feature subset, so promising to obtain every message of a claimed device by hypercall. "
        "On success the VM is NEGOTIATED; on refusal it stays OPEN and the output block says why.",
        input="negotiate_in",
        output="negotiate_out",
        value="the features now in force (as negotiate_out.features)",
        states=(VmState.OPEN,),
    ),
    CallDef(
        "RESET",
        FunctionNumber.RESET,
        "Free every message and release every device of the calling VM, then return it to OPEN, as a VM "
        "reset does. For a kexec'd or crashed guest kernel that starts afresh.",
        value="number of vectors freed",
        states=ANY_STATE,
    ),
    CallDef(
        "DEVICE_QUERY",
        FunctionNumber.DEVICE_QUERY,
        "Describe a device assigned to the VM: kinds it supports, table sizes, isolation, its claim and "
        "allocation state and quota.",
        input="device_id",
        output="device_info",
    ),
    CallDef(
        "DEVICE_CLAIM",
        FunctionNumber.DEVICE_CLAIM,
        "Claim message kinds of a device for pvmsi: the hypervisor stops emulating them; the guest writes pairs "
        "into the MSI-X table itself without exits, the hypervisor writes a claimed MSI capability itself, and "
        "configuration space stays trapped.",
        input="claim_in",
    ),
    CallDef(
        "DEVICE_RELEASE",
        FunctionNumber.DEVICE_RELEASE,
        "Free every message the device still holds and hand all its kinds back to emulation.",
        input="device_id",
        value="number of vectors freed",
    ),
    CallDef(
        "MSG_ALLOC",
        FunctionNumber.MSG_ALLOC,
        "Reserve one message per entry (for MSI, one block of vector_count consecutive data values): its remapping "
        "entries are set aside, delivering nothing, and a handle is returned without a pair. With "
        "PVMSI_ALLOC_ACTIVATE the entry is activated as well (one step) and its pair returned.",
        input="batch_in",
        input_entry="alloc_entry",
        output="batch_out",
        output_entry="alloc_result",
        value="next_index (as batch_out.next_index)",
    ),
    CallDef(
        "MSG_ACTIVATE",
        FunctionNumber.MSG_ACTIVATE,
        "Set the target (vCPU and vector) of a reserved message, or change that of an active one, per vector of a "
        "multi-message MSI block where the platform allows, and return the pair in force; where remapping allows "
        "a change keeps the pair and the device need not be rewritten.",
        input="batch_in",
        input_entry="activate_entry",
        output="batch_out",
        output_entry="activate_result",
        value="next_index (as batch_out.next_index)",
    ),
    CallDef(
        "MSG_FREE",
        FunctionNumber.MSG_FREE,
        "Free reserved or active messages; only the VM (and device) holding a handle may free it.",
        input="batch_in",
        input_entry="free_entry",
        output="batch_out",
        output_entry="free_result",
        value="next_index (as batch_out.next_index)",
    ),
    CallDef(
        "MSG_DEACTIVATE",
        FunctionNumber.MSG_DEACTIVATE,
        "Return active messages (a vector, or the whole block) to reserved: their remapping entries stop "
        "delivering, with fault reporting suppressed where the IOMMU can; the handles stay valid.",
        input="batch_in",
        input_entry="deactivate_entry",
        output="batch_out",
        output_entry="deactivate_result",
        value="next_index (as batch_out.next_index)",
    ),
    CallDef(
        "EVENT_CONFIG",
        FunctionNumber.EVENT_CONFIG,
        "Register the vCPU and vector on which the hypervisor injects a notification whenever it queues a "
        "host-to-guest event, or clear the registration. The queue itself exists without a target: a guest may "
        "poll EVENT_FETCH.",
        input="event_config_in",
    ),
    CallDef(
        "EVENT_FETCH",
        FunctionNumber.EVENT_FETCH,
        "Write every unacknowledged event, oldest first, to the output block. It changes no state: the same "
        "events come back until EVENT_ACK acknowledges them.",
        output="event_header",
        output_entry="event",
        value="count (as event_header.count)",
    ),
    CallDef(
        "EVENT_ACK",
        FunctionNumber.EVENT_ACK,
        "Acknowledge, and so remove from the queue, every event whose sequence number is at most the one given.",
        input="event_ack_in",
        value="events still unacknowledged",
    ),
)

CALLS_BY_FN: dict[int, CallDef] = {int(c.fn): c for c in CALLS}

#: The batch calls, by function number.
BATCH_CALLS: dict[int, CallDef] = {int(c.fn): c for c in CALLS if c.batched}

#: The largest batch of any call (what a page holds of the smallest entries): the most ``hv_info.max_batch`` may
#: be (HV-DISC-004).
LARGEST_BATCH: int = max(c.max_batch or 0 for c in CALLS)


def call(name: str) -> CallDef:
    """The call named ``name`` (e.g. ``"MSG_ALLOC"``)."""
    for c in CALLS:
        if c.name == name:
            return c
    raise KeyError(name)


def _check_event_page() -> None:
    """PVMSI_MAX_EVENTS is what one EVENT_FETCH output page holds (HV-EVT-005)."""
    held = (int(Limit.PAGE_SIZE) - format_layout("event_header").size) // format_layout("event").size
    if held != int(Limit.MAX_EVENTS):
        raise ValueError(f"MAX_EVENTS is {int(Limit.MAX_EVENTS)}, a page holds {held} events")


_check_event_page()
