"""Open the implementation under test named by ``--iut``."""

from __future__ import annotations

from ..spec.iut import GuestIUT, HypervisorIUT, IutError
from .harness.client import HarnessConnection, HarnessGuest, HarnessHypervisor
from .harness.transport import open_channel


def open_hypervisor(spec: str, timeout: float) -> HypervisorIUT:
    """``reference``, ``faulty:NAME`` (in-process), or ``unix:PATH`` / ``tcp:HOST:PORT`` / ``exec:CMD``."""
    if spec == "reference":
        from ..reference.backend import ReferenceHypervisor

        return ReferenceHypervisor()
    if spec.startswith("faulty:"):
        from .faults import faulty_hypervisor

        return faulty_hypervisor(spec.removeprefix("faulty:"))
    if spec.split(":", 1)[0] in ("unix", "tcp", "exec"):
        conn = HarnessConnection(open_channel(spec, timeout), timeout)
        try:
            return HarnessHypervisor(conn)
        except Exception:
            conn.channel.close()
            raise
    raise IutError(f"--iut {spec!r}: expected reference, faulty:NAME, unix:PATH, tcp:HOST:PORT or exec:CMD")


def open_guest(spec: str, timeout: float) -> GuestIUT:
    """``reference``, ``faulty:NAME`` (in-process guests), or ``unix:PATH`` / ``tcp:HOST:PORT`` / ``exec:CMD``."""
    if spec == "reference":
        from .guest import ReferenceGuest

        return ReferenceGuest()
    if spec.startswith("faulty:"):
        from .faults import faulty_guest

        return faulty_guest(spec.removeprefix("faulty:"))
    if spec.split(":", 1)[0] in ("unix", "tcp", "exec"):
        conn = HarnessConnection(open_channel(spec, timeout), timeout)
        try:
            return HarnessGuest(conn)
        except Exception:
            conn.channel.close()
            raise
    raise IutError(f"--iut {spec!r}: expected reference, faulty:NAME, unix:PATH, tcp:HOST:PORT or exec:CMD")
