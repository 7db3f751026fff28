"""The state of the guest suite's hypervisor model (:class:`~.guest_host.HostModel`): the reference hypervisor
with the one VM the guest under test runs in, the events recorded so far, the violations found, and what the
guest has done and been told (discovery, negotiation, claims, handles, slot contents); with the look-ups the
checks of :mod:`.guest_call_checks` and :mod:`.guest_device_checks` share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..reference.backend import ReferenceHypervisor
from ..reference.guest.actions import SetEnabled
from ..reference.guest.driver import InProcessDriver
from ..reference.hypervisor.config import HypervisorConfig
from ..reference.hypervisor.core import HypervisorCore
from ..reference.hypervisor.vmstate import Message
from ..spec.calls import LARGEST_BATCH
from ..spec.constants import Limit, MsgKind
from ..spec.harness_constants import DeviceOp
from ..spec.iut import VmKnobs
from .guest_host_knobs import KNOWN_1_0, HostKnobs, MovingRetargetCore
from .guest_host_records import CallRecord, DeviceKey, DeviceRecord, Event, Violation, guest_device
from .guest_probe import GuestProbe
from .guest_refusals import Refusals
from .toolkit import DEFAULT_DEVICES

PAGE = int(Limit.PAGE_SIZE)
#: The guest under test sees the devices the hypervisor suite's test VMs have, at the same addresses.
GUEST_DEVICES = DEFAULT_DEVICES
VCPUS = 4
RAM_MIB = 16


class HostState:
    """The reference hypervisor with one VM, and everything the model has recorded and learnt about the guest."""

    def __init__(self, knobs: HostKnobs | None = None, log: Callable[[str], None] | None = None) -> None:
        self.knobs = k = knobs or HostKnobs()
        offered = KNOWN_1_0 | k.extra_offered | k.required
        config = HypervisorConfig(
            version_major=k.version[0],
            version_minor=k.version[1],
            features_offered=offered,
            max_batch=k.max_batch or LARGEST_BATCH,
            max_messages_per_device=k.device_quota or 4096,
            platform=k.platform,
        )
        self.hv = ReferenceHypervisor(config, core=MovingRetargetCore if k.retarget_moves else HypervisorCore)
        self.vm_id = self.hv.create_vm(
            VCPUS, RAM_MIB, list(GUEST_DEVICES), VmKnobs(k.yield_after, k.required, k.withheld)
        )
        self.svm = self.hv.system.vms[self.vm_id]
        self.core = self.hv.system.core
        self.driver = InProcessDriver(self.hv.system, self.svm)
        self.probe = GuestProbe(self.hv, self.vm_id, k.probe)
        self.shared: tuple[int, int] | None = None  # [start, end) of the memory shared with the host (BOOT)
        self.offered = offered & ~k.withheld
        self.log = log or (lambda _line: None)
        for dev, kind in k.preenabled:
            self.driver.execute(SetEnabled(guest_device(dev), kind, True))

        self.events: list[Event] = []
        self.violations: list[Violation] = []
        self.command = "(before any command)"
        # what the guest has done and been told
        self.discovery: str | None = None  # None: no VERSION yet; "present"; "absent"; "major"
        self.negotiated = 0
        #: The features NEGOTIATE's value granted: the guest uses no other (GUEST-NEG-006; of these, one it did not
        #: ask for is GUEST-REFUSE-001's, checked by :mod:`.guest_refusals`).
        self.granted = 0
        self.refused = False
        self.queried: set[DeviceKey] = set()
        self.issued: dict[int, DeviceKey] = {}
        self.unplugged: set[tuple[int, int, int]] = set()
        self.flr_reset: set[tuple[int, int, int]] = set()
        self.programmed: dict[tuple[DeviceKey, int, int], tuple[int, int, int]] = {}
        self.masked: dict[tuple[DeviceKey, int, int], bool] = {}
        self.enabled: dict[tuple[DeviceKey, int], bool] = {}
        self.rewrite_needed: dict[tuple[DeviceKey, int, int], tuple[int, int]] = {}
        self.stale: dict[tuple[DeviceKey, int, int], tuple[int, int]] = {}
        self.pending_resume: CallRecord | None = None
        self.abandoned: list[Message] = []
        self.enabled_before_negotiate: list[str] = []
        #: The event channel (:mod:`.guest_events`): handles the model revoked, the events the guest last fetched.
        self.revoked: set[int] = set()
        #: Each revoked handle: the event index of its revocation, its device, kind and slot (GUEST-REVOKE-001).
        self.revoked_at: dict[int, tuple[int, DeviceKey, int, int]] = {}
        self.fetched: list[Any] = []
        #: Actions a test has happen while the guest handles its events, one after each EVENT_FETCH.
        self.while_handling: list[Callable[[], object]] = []
        #: What the model answered beyond the guest's request, and what the guest must refuse (GUEST-REFUSE-*).
        self.refusals = Refusals(k.overreach)

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def violate(self, rid: str, detail: str) -> None:
        self.violations.append(Violation(rid, detail, self.command))
        self.log(f"  !! {rid}: {detail}")

    def violations_of(self, rid: str) -> list[Violation]:
        return [v for v in self.violations if v.rid == rid]

    def calls(self, fn: int | None = None) -> list[CallRecord]:
        return [e for e in self.events if isinstance(e, CallRecord) and (fn is None or e.fn == fn)]

    def device_ops(self, op: DeviceOp | None = None) -> list[DeviceRecord]:
        return [e for e in self.events if isinstance(e, DeviceRecord) and (op is None or e.op is op)]

    def live(self) -> dict[int, Message]:
        return dict(self.core.state_of(self.svm).messages)

    def live_at(self, key: DeviceKey, kind: int, slot: int) -> Message | None:
        for m in self.core.state_of(self.svm).messages.values():
            if m.device == key and int(m.kind) == kind and m.slot == slot:
                return m
        return None

    def kind_on(self, key: DeviceKey, kind: int) -> bool:
        """Whether the kind is enabled on the device: MSI Enable / MSI-X Enable as the guest last set them; IMS has
        no kind-wide enable (harness DeviceOp DISABLE: IMS no-op), so its slots' masks alone decide."""
        return kind == MsgKind.IMS or self.enabled.get((key, kind), False)

    def unmasked_ims(self, key: DeviceKey) -> list[int]:
        """The IMS slots of the device the guest wrote and left unmasked."""
        return sorted(w[2] for w, m in self.masked.items() if w[0] == key and w[1] == MsgKind.IMS and not m)

    def claimed_kinds(self, key: DeviceKey) -> int:
        claim = self.core.state_of(self.svm).claims.get(key)
        return claim.kinds if claim is not None else 0

    def begin(self, command: str) -> None:
        self.command = command

    def booting(self, scratch_gpa: int) -> None:
        """BOOT hands the guest its two scratch pages: the memory it shares with the host (harness)."""
        self.shared = (scratch_gpa, scratch_gpa + 2 * PAGE)
