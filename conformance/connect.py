"""Open the implementation under test named by ``--iut`` (docs/conformance-guide.md, "The command line").

Every failure to open it is an :class:`~pvmsi.spec.iut.IutError` whose message starts with ``--iut SPEC:`` and
says why in the user's terms; an IUT that does not answer ``HELLO`` in time is an
:class:`~pvmsi.spec.iut.IutTimeout` worded the same way.
"""

from __future__ import annotations

from typing import Literal

from ..spec.iut import GuestIUT, HypervisorIUT, IutError, IutTimeout
from ..spec.platforms import DEFAULT_PLATFORM
from ..spec.platforms import platform as platform_def
from .harness.client import HarnessConnection, HarnessGuest, HarnessHypervisor
from .harness.transport import open_channel

SCHEMES = ("unix", "tcp", "exec")
FORMS = "reference, faulty:NAME, unix:PATH, tcp:HOST:PORT or exec:CMD"


def open_hypervisor(spec: str, timeout: float, platform: str | None = None) -> HypervisorIUT:
    """``reference``, ``faulty:NAME`` (in-process, on ``platform``: the ICS's), or ``unix:PATH`` /
    ``tcp:HOST:PORT`` / ``exec:CMD`` (which run on their own platform)."""
    if spec == "reference":
        from ..reference.backend import ReferenceHypervisor

        return ReferenceHypervisor(platform=platform)
    if spec.startswith("faulty:"):
        from .faults import faulty_hypervisor

        try:
            return faulty_hypervisor(spec.removeprefix("faulty:"), platform)
        except KeyError as e:
            raise IutError(f"--iut {spec}: {e.args[0]}") from None
    conn = _connect(spec, timeout)
    try:
        return HarnessHypervisor(conn)
    except BaseException as e:
        conn.channel.close()
        raise _named(spec, e) from None


def open_guest(spec: str, timeout: float, platform: str | None = None) -> GuestIUT:
    """``reference``, ``faulty:NAME`` (in-process guests on ``platform``'s architecture: the ICS's), or
    ``unix:PATH`` / ``tcp:HOST:PORT`` / ``exec:CMD`` (which run on their own)."""
    arch = platform_def(platform or DEFAULT_PLATFORM).arch
    if spec == "reference":
        from .guest import ReferenceGuest

        return ReferenceGuest(arch=arch)
    if spec.startswith("faulty:"):
        from .faults import faulty_guest

        try:
            return faulty_guest(spec.removeprefix("faulty:"), arch)
        except KeyError as e:
            raise IutError(f"--iut {spec}: {e.args[0]}") from None
    conn = _connect(spec, timeout)
    try:
        return HarnessGuest(conn)
    except BaseException as e:
        conn.channel.close()
        raise _named(spec, e) from None


def open_iut(
    role: Literal["hypervisor", "guest"], spec: str, timeout: float, platform: str | None = None
) -> HypervisorIUT | GuestIUT:
    """The IUT of ``role`` named by ``spec`` (an in-process hypervisor on ``platform``)."""
    return open_guest(spec, timeout, platform) if role == "guest" else open_hypervisor(spec, timeout, platform)


def _connect(spec: str, timeout: float) -> HarnessConnection:
    if spec.split(":", 1)[0] not in SCHEMES:
        raise IutError(f"--iut {spec or repr(spec)}: expected {FORMS}")
    try:
        return HarnessConnection(open_channel(spec, timeout), timeout)
    except IutError as e:
        raise _named(spec, e) from None


def _named(spec: str, e: BaseException) -> BaseException:
    """``e`` with a message that names the IUT once; other exceptions are left as they are."""
    if not isinstance(e, IutError | IutTimeout):
        return e
    why = str(e).removeprefix(f"{spec}: ")
    return type(e)(f"--iut {spec}: {why}")
