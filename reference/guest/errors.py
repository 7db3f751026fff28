"""How a guest operation fails: :class:`GuestError` (re-exported by :mod:`.core`)."""

from __future__ import annotations

from ...spec.constants import Status


class GuestError(Exception):
    """A pvmsi call failed in a way the guest cannot hide; ``status`` is the spec status."""

    def __init__(self, call: str, status: int, detail: str = "") -> None:
        name = Status(status).name if status in Status._value2member_map_ else str(status)
        super().__init__(f"{call} failed with {name}{': ' + detail if detail else ''}")
        self.call = call
        self.status = status
