"""``pvmsi serve``: run a reference implementation as an implementation under test (harness protocol)."""

from __future__ import annotations

import sys

import click

from ..conformance.harness.serve import (
    Deadlines,
    Factory,
    ServiceFactory,
    serve_socket,
    serve_stdio,
    terminate_on_sigterm,
)
from ..spec.iut import HypervisorIUT
from ..spec.platforms import DEFAULT_PLATFORM, PLATFORM_KEYS
from ..spec.platforms import platform as platform_def


@click.command()
@click.option(
    "--role",
    type=click.Choice(["hypervisor", "guest"]),
    default="hypervisor",
    show_default=True,
    help="What to serve: the reference hypervisor, or the reference guest (it waits for GUEST_COMMAND frames).",
)
@click.option("--listen", help="unix:PATH or tcp:127.0.0.1:PORT (PORT 0 picks one and prints it).")
@click.option("--stdio", is_flag=True, help="Speak the protocol on stdin/stdout (for --iut exec:...).")
@click.option("--fault", help="Serve a deliberately faulty hypervisor or guest (see `pvmsi conformance faults`).")
@click.option(
    "--idle-timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="Close a session after this many seconds without a byte.",
)
@click.option(
    "--frame-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Close a session whose frame is not complete this many seconds after its first byte.",
)
@click.option(
    "--write-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Close a session whose peer does not take a response within this many seconds.",
)
@click.option(
    "--answer-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Guest role: end a command when the suite does not answer the guest's request within this many seconds.",
)
@click.option("--once", is_flag=True, help="Exit after the first connection ends.")
@click.option(
    "--platform",
    type=click.Choice(list(PLATFORM_KEYS)),
    default=None,
    help=f"The platform it runs on (default {DEFAULT_PLATFORM}, or a --fault's own): a hypervisor's IOMMU, message "
    "format and architecture, a guest's architecture (its discovery and registers); run the suite with an ICS "
    "naming the same one.",
)
def serve(
    role: str,
    listen: str | None,
    stdio: bool,
    fault: str | None,
    idle_timeout: float,
    frame_timeout: float,
    write_timeout: float,
    answer_timeout: float,
    once: bool,
    platform: str | None,
) -> None:
    """Serve the reference hypervisor or guest (or a faulty one) over the harness protocol."""
    if bool(listen) == stdio:
        raise click.UsageError("give exactly one of --listen ADDRESS or --stdio")
    deadlines = Deadlines(idle=idle_timeout, frame=frame_timeout, write=write_timeout)
    if role == "guest":
        _run(listen, deadlines, once, service=_guest_service(fault, answer_timeout, platform))
        return

    def factory() -> HypervisorIUT:
        if fault:
            from ..conformance.faults import faulty_hypervisor

            return faulty_hypervisor(fault, platform)
        from ..reference.backend import ReferenceHypervisor

        return ReferenceHypervisor(platform=platform)

    if fault:
        try:
            factory()
        except KeyError as e:
            raise click.UsageError(str(e.args[0])) from None
    _run(listen, deadlines, once, factory=factory)


def _run(
    listen: str | None,
    deadlines: Deadlines,
    once: bool,
    *,
    factory: Factory | None = None,
    service: ServiceFactory | None = None,
) -> None:
    """Serve on stdio (``listen`` None) or a socket until the peer, SIGINT or SIGTERM ends it."""
    with terminate_on_sigterm():
        if listen is None:
            serve_stdio(factory, deadlines, service=service)
            return
        try:
            serve_socket(
                factory,
                listen,
                deadlines,
                once,
                ready=lambda where: print(f"pvmsi serve: listening on {where}", file=sys.stderr, flush=True),
                service=service,
            )
        except (ValueError, OSError) as e:
            raise click.UsageError(str(e)) from None
        except KeyboardInterrupt:
            pass


def _guest_service(fault: str | None, answer_timeout: float, platform: str | None) -> ServiceFactory:
    from ..conformance.guest import CoreFactory, GuestRunner, reference_core
    from ..conformance.harness.guest_server import GuestService

    factory: CoreFactory = reference_core
    name = b"pvmsi-ref"
    if fault:
        from ..conformance.faults import faulty_core

        try:
            factory = faulty_core(fault)
        except KeyError as e:
            raise click.UsageError(str(e.args[0])) from None
        name = b"faulty"

    def service() -> GuestService:
        return GuestService(
            GuestRunner(factory, arch=platform_def(platform or DEFAULT_PLATFORM).arch), name, answer_timeout
        )

    return service
