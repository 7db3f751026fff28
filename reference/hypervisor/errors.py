"""How a check inside the core fails a call or a batch entry."""

from __future__ import annotations

from ...spec.constants import Status


class CallError(Exception):
    """A check failed: the call (or the batch entry) ends with ``status``."""

    def __init__(self, status: Status, why: str) -> None:
        super().__init__(f"{status.name}: {why}")
        self.status = status
        self.why = why
