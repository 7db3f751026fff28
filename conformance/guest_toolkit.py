"""What a guest-suite test uses to play the hypervisor: the model, the commands, delivery and violation checks.

A test makes a :class:`~.guest_host.HostModel` with the knobs it needs (:meth:`GuestSession.host`), then drives
the guest under test with commands (:meth:`GuestSession.boot`, :meth:`~GuestSession.enable`, ...).  The model
answers the guest's calls and device accesses and records every breach of a guest requirement; the test checks
that none of the requirements it names was broken (:meth:`GuestSession.clean`), and that the messages the guest
enabled deliver where they should (:meth:`GuestSession.delivers`).  Every call and device access is in the
transcript the reports show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..spec.constants import FunctionNumber, MsgKind, Status
from ..spec.harness_constants import GuestBootFlag, GuestOp
from ..spec.iut import DeviceRef, GuestCommand, GuestIUT, GuestMode, GuestResult
from ..spec.platforms import DEFAULT_PLATFORM
from . import guest_events
from .guest_host import HostModel
from .guest_host_knobs import HostKnobs
from .guest_host_records import CallRecord
from .toolkit import ABSENT, IDXD, MLX5, MSI_DEV, check, status_name, vector_shift

#: The first of the two guest pages the suite assigns for parameter blocks (BOOT's scratch_gpa).
SCRATCH = 0x10000
IDXD_SUB = IDXD.with_pasid(1)

__all__ = [
    "ABSENT",
    "IDXD",
    "IDXD_SUB",
    "MLX5",
    "MSI_DEV",
    "SCRATCH",
    "GuestSession",
    "HostKnobs",
]


@dataclass
class GuestSession:
    """One test's view of the guest under test and the model playing its hypervisor."""

    iut: GuestIUT
    transcript: list[str] = field(default_factory=list)
    model: HostModel | None = None
    results: list[GuestResult] = field(default_factory=list)
    #: The platform the model serves the guest (the ICS's, spec "Message formats").
    platform: str = DEFAULT_PLATFORM

    def log(self, line: str) -> None:
        self.transcript.append(line)

    def host(self, **knobs: Any) -> HostModel:
        """A fresh hypervisor model with these :class:`HostKnobs`; the guest must BOOT against it."""
        self.model = HostModel(HostKnobs(**{"platform": self.platform, **knobs}), self.log)
        if knobs:
            self.log(f"model: {', '.join(f'{k}={v!r}' for k, v in knobs.items())}")
        return self.model

    @property
    def vector_shift(self) -> int:
        """The platform's offset from the x86 vectors tests name (:func:`~.toolkit.vector_shift`) once the guest
        uses pvmsi; a guest left on emulation programs the model's emulated MSI, which is x86's compatibility
        format on every platform (a limit of the model: it has no vITS or vIMSIC), so no offset then."""
        booted = [r.mode for r in self.results if r.mode is not GuestMode.NOT_BOOTED]
        if booted and booted[-1] is GuestMode.EMULATED:
            return 0
        return vector_shift(self.platform)

    @property
    def hv(self) -> HostModel:
        if self.model is None:
            self.host()
        assert self.model is not None
        return self.model

    # -- commands ---------------------------------------------------------------------------------------------

    def command(self, cmd: GuestCommand) -> GuestResult:
        hv = self.hv
        what = cmd.describe()
        self.log(f"-> {what}")
        hv.begin(what)
        if cmd.op is GuestOp.BOOT:
            hv.booting(cmd.scratch_gpa)
        r = self.iut.command(cmd, hv)
        hv.end(r)
        self.results.append(r)
        self.log(f"<- {status_name(r.status)}, mode {r.mode.name}, done {r.done}")
        return r

    def boot(self, scratch: int = SCRATCH) -> GuestResult:
        """BOOT; a second BOOT is a reboot into a fresh VM with the same knobs (harness GuestOp BOOT)."""
        if self.model is not None and any(r.mode is not GuestMode.NOT_BOOTED for r in self.results):
            self.log("reboot: a fresh VM")
            self.model = HostModel(self.model.knobs, self.log)
        flags = GuestBootFlag.CONFIDENTIAL if self.hv.knobs.confidential else 0  # harness PVMSI_HBOOT_*
        return self.command(GuestCommand(GuestOp.BOOT, count=int(flags), scratch_gpa=scratch))

    def enable(
        self, dev: DeviceRef, kind: MsgKind, count: int, *, vcpu: int = 1, vector: int = 0x40, first_slot: int = 0
    ) -> GuestResult:
        vector += self.vector_shift  # into the platform's range (arm64: LPIs from 8192)
        return self.command(GuestCommand(GuestOp.ENABLE, dev, int(kind), count, vcpu, vector, first_slot))

    def retarget(self, dev: DeviceRef, kind: MsgKind, vcpu: int) -> GuestResult:
        return self.command(GuestCommand(GuestOp.RETARGET, dev, int(kind), vcpu=vcpu))

    def disable(self, dev: DeviceRef, kind: MsgKind) -> GuestResult:
        return self.command(GuestCommand(GuestOp.DISABLE, dev, int(kind)))

    def release(self, dev: DeviceRef) -> GuestResult:
        return self.command(GuestCommand(GuestOp.RELEASE, dev))

    def flr(self, dev: DeviceRef) -> GuestResult:
        """The device goes through an FLR, then the guest is told to restore it."""
        self.hv.flr(dev)
        return self.command(GuestCommand(GuestOp.FLR, dev))

    def unplug(self, dev: DeviceRef) -> GuestResult:
        """The device is hot-unplugged, then the guest is told it is gone."""
        self.hv.unplug(dev)
        return self.command(GuestCommand(GuestOp.UNPLUG, dev))

    def events(self, vcpu: int = 0, vector: int = 0xE0) -> GuestResult:
        """Have the guest register its notification target (EVENT_CONFIG)."""
        return self.command(GuestCommand(GuestOp.EVENTS, vcpu=vcpu, vector=vector + self.vector_shift))

    def migrate(self) -> None:
        """Live-migrate the guest's VM to a crowded destination (pairs change, REFETCH queued)."""
        guest_events.migrate(self.hv)

    def revoke(self, dev: DeviceRef, kind: MsgKind, slot: int) -> int:
        """Revoke the message of ``slot`` by host policy; its handle."""
        return guest_events.revoke(self.hv, dev, int(kind), slot)

    def queue_event(self, event_type: int) -> None:
        """Queue an event of any type, one 1.0 does not define included."""
        guest_events.queue(self.hv, event_type)

    def while_handling(self, action: Callable[[], object]) -> None:
        """Have ``action`` happen after the guest's next EVENT_FETCH, before it acknowledges what it fetched."""
        self.hv.while_handling.append(action)

    def notify(self) -> GuestResult:
        """Raise the notification interrupt in the guest (NOTIFY), then check how it handled the events."""
        r = self.command(GuestCommand(GuestOp.NOTIFY))
        guest_events.check_handled(self.hv)
        return r

    # -- checks ---------------------------------------------------------------------------------------------------

    def clean(self, *rids: str) -> None:
        """Fail on the first recorded breach of any of ``rids`` (in that order)."""
        for rid in rids:
            found = self.hv.violations_of(rid)
            if found:
                v = found[0]
                more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
                check(False, rid, "no breach", f"during {v.command}: {v.detail}{more}")

    def ok(self, r: GuestResult, rid: str, what: str, mode: GuestMode | None = GuestMode.PVMSI) -> None:
        """The command succeeded (in ``mode``)."""
        check(r.status == Status.SUCCESS, rid, f"{what} -> SUCCESS", status_name(r.status))
        if mode is not None:
            check(r.mode is mode, rid, f"{what}: guest in mode {mode.name}", r.mode.name)

    def fell_back(self, r: GuestResult, rid: str) -> None:
        """A BOOT that fell back to emulation: SUCCESS (harness guest_result, GUEST-STAT-002) in mode EMULATED
        (``rid``: the rule that made the guest fall back)."""
        check(r.status == Status.SUCCESS, "GUEST-STAT-002", "BOOT that falls back -> SUCCESS", status_name(r.status))
        check(r.mode is GuestMode.EMULATED, rid, "BOOT: guest in mode EMULATED", r.mode.name)

    def delivers(
        self, dev: DeviceRef, kind: MsgKind, count: int, rid: str, *, vcpu: int = 1, vector: int = 0x40, first: int = 0
    ) -> None:
        """Every vector of an ENABLE(count from ``first``) delivers ``vector + i`` to ``vcpu``."""
        vector += self.vector_shift
        for i in range(count):
            index = i if kind is MsgKind.MSI else first + i
            bad = self.hv.delivered(dev, kind, index, vcpu, vector + i)
            check(
                bad is None,
                rid,
                f"{dev} {kind.name}[{index}] delivers vector {vector + i:#x} to vCPU {vcpu}",
                bad or "",
            )

    def calls(self, fn: FunctionNumber | None = None, command: str | None = None) -> list[CallRecord]:
        return [c for c in self.hv.calls(None if fn is None else int(fn)) if command is None or c.command == command]

    def fns(self) -> list[str]:
        return [
            FunctionNumber(c.fn).name if c.fn in FunctionNumber._value2member_map_ else hex(c.fn) for c in self.calls()
        ]

    def full_workout(self) -> None:
        """Boot and use every kind: MSI-X, IMS, multi-message MSI, an IMS sub-device; retarget, disable, release."""
        self.boot()
        self.enable(MLX5, MsgKind.MSIX, 6, vcpu=1, vector=0x40)
        self.enable(MLX5, MsgKind.IMS, 3, vcpu=2, vector=0x60, first_slot=10)
        self.enable(MSI_DEV, MsgKind.MSI, 8, vcpu=3, vector=0x80)
        self.enable(IDXD_SUB, MsgKind.IMS, 2, vcpu=0, vector=0xA0, first_slot=4)
        self.retarget(MLX5, MsgKind.MSIX, 2)
        self.disable(MLX5, MsgKind.IMS)
        self.release(MLX5)
        self.disable(MSI_DEV, MsgKind.MSI)


def each(records: Sequence[CallRecord]) -> list[str]:
    return [f"{FunctionNumber(r.fn).name} -> {status_name(r.status)}" for r in records]
