"""How a check inside the core fails a call or a batch entry."""

from __future__ import annotations

from ...spec.codec import DecodeError
from ...spec.constants import Status
from ...spec.fastcodec import fast


class CallError(Exception):
    """A check failed: the call (or the batch entry) ends with ``status``.

    ``requirement`` is the id of the requirement the check implements (e.g. ``"HV-DEV-004"``), as data: code
    that reacts to a failure decides on it and on ``status``, never on ``why``, the human explanation.
    """

    def __init__(self, status: Status, requirement: str, why: str, check: str = "") -> None:
        super().__init__(f"{status.name}: {why} ({requirement})")
        self.status = status
        self.requirement = requirement
        self.why = why
        #: The key of the failed step in the call's check order (spec/checks.py), "" when not recorded.
        self.check = check


def decode_failure(e: DecodeError) -> CallError:
    """A block that does not decode fails with INVALID_PARAMETER: an undefined value of an enumerated field
    breaks HV-CONV-002, a non-zero reserved field or an undefined flag bit HV-CONV-001."""
    enumerated = any(leaf.enum_values is not None for leaf in fast(e.fmt).leaves if leaf.path == e.path)
    return CallError(Status.INVALID_PARAMETER, "HV-CONV-002" if enumerated else "HV-CONV-001", str(e))
