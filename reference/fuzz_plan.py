"""What the fuzzer's model (:mod:`.fuzz_model`) expects of one call: the :class:`Plan` it works out before the
call and checks after it, the :class:`Refusal` by which a planned call fails (a status and the requirement
behind it), and the codecs of every block the model reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..spec.calls import CallDef
from ..spec.codec import DecodeError
from ..spec.constants import Status
from ..spec.fastcodec import fast
from .fuzz_state import VmModel

#: The fast codec of each format the model decodes, by format name.
CODECS = {n: fast(n) for n in ("negotiate_in", "device_id", "claim_in", "batch_in", "batch_out", "hv_info")}
CODECS.update({n: fast(n) for n in ("negotiate_out", "device_info", "alloc_entry", "activate_entry", "free_entry")})
CODECS.update({n: fast(n) for n in ("alloc_result", "activate_result", "free_result")})
CODECS.update({n: fast(n) for n in ("deactivate_entry", "deactivate_result")})
CODECS.update({n: fast(n) for n in ("event_config_in", "event_header", "event_ack_in")})


class Refusal(Exception):
    """The model's own "the call fails here": a status, and the requirement behind it."""

    def __init__(self, status: Status, requirement: str) -> None:
        super().__init__(requirement)
        self.status = status
        self.requirement = requirement


@dataclass
class Plan:
    """What one call must do: filled in before the call, checked and applied after it."""

    vm: VmModel
    call: CallDef | None
    status: int = 0
    value: int = 0
    #: The output block's expected bytes-level content: format name and field values (non-batch calls).
    output: tuple[str, dict[str, Any]] | None = None
    #: Batch: the header, the entries' records from ``start`` (None: the entry does not decode), the stop.
    batch: tuple[Any, list[Any], int] | None = None
    apply: Callable[[], object] | None = None
    #: Further checks of the decoded output block, beyond field values: the problems found (none: it holds).
    relations: Callable[[Any], list[str]] | None = None


def read_output(name: str, raw: bytes | None) -> Any:
    """An output block or result as its record; None when it is unreadable or does not decode (a reserved field
    not zero, an undefined value: HV-SEC-008, spec "Conventions")."""
    if raw is None:
        return None
    try:
        return CODECS[name].unpack_record_from(raw)
    except DecodeError:
        return None
