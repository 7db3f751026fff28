"""The check order of every call (spec "Status codes", HV-CALL-005): one numbered list per call, defined here once.

A request can be wrong in several ways at once; the hypervisor runs a call's checks in the order of its list and
the first failing check decides the status (HV-CALL-005).  Each :class:`Check` names what fails, the status, the
requirement that fixes it, where it applies (``common`` to every call, the call's own ``call`` checks, a batch's
``header`` checks, the ``entry`` checks of each batch entry in turn, or the ``outcome`` when nothing failed) and
what the hypervisor writes to guest memory when it fails there.  The docs render each list on the call's page,
``pvmsi spec dump --json`` gives it as ``checks`` and the suite's swapped-order faults are generated from it
(:mod:`.check_swaps` names the adjacent pairs a suite must tell apart, and why the others are left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .calls import CALLS, CallDef
from .constants import Status
from .fastcodec import fast

#: Where a check applies.
SCOPES = ("common", "call", "header", "entry", "outcome")

NOTHING = "nothing"
BATCH_OUT = "batch_out, and the results of the entries from start to the failing one (HV-MEM-007, HV-BATCH-002)"


@dataclass(frozen=True)
class Check:
    """One step of a call's check order: it fails when ``check`` holds (read "fails when ...")."""

    key: str
    check: str
    status: Status
    requirement: str
    scope: str = "call"
    writes: str = NOTHING

    def as_dict(self, step: int) -> dict[str, Any]:
        return {
            "step": step,
            "key": self.key,
            "check": self.check,
            "status": self.status.name,
            "requirement": self.requirement,
            "scope": self.scope,
            "writes": self.writes,
        }


def _c(key: str, check: str, status: Status, requirement: str, scope: str = "call", writes: str = NOTHING) -> Check:
    return Check(key, check, status, requirement, scope, writes)


FUNCTION = _c(
    "function",
    "the function number names no call the hypervisor implements",
    Status.NOT_SUPPORTED,
    "HV-CALL-001",
    "common",
)
REGISTERS = _c(
    "registers",
    "arg2 or arg3 is not zero, or a block address register is zero where the call takes that block, or not zero "
    "where it takes none",
    Status.INVALID_PARAMETER,
    "HV-CALL-003",
    "common",
)


def _state(c: CallDef) -> Check:
    if c.name == "NEGOTIATE":
        return _c("state", "the VM is NEGOTIATED", Status.WRONG_STATE, "HV-NEG-006", "common")
    return _c("state", "the VM is OPEN (not negotiated)", Status.WRONG_STATE, "HV-STATE-002", "common")


def _block(which: str, scope: str = "common", size: str = "") -> tuple[Check, ...]:
    """The memory rules of one block, in order (HV-MEM-001..003)."""
    extent = f" ({size})" if size else ""
    return (
        _c(
            f"{which}-align",
            f"the {which} block's address is not 8-byte aligned",
            Status.INVALID_ADDRESS,
            "HV-MEM-001",
            scope,
        ),
        _c(
            f"{which}-page",
            f"the {which} block{extent} crosses a 4 KiB page boundary",
            Status.INVALID_ADDRESS,
            "HV-MEM-002",
            scope,
        ),
        _c(
            f"{which}-ram",
            f"the {which} block{extent} is not all guest RAM",
            Status.INVALID_ADDRESS,
            "HV-MEM-003",
            scope,
        ),
    )


DISJOINT = _c("overlap", "the input and output blocks overlap", Status.INVALID_ADDRESS, "HV-MEM-004", "common")


def _decode(what: str, scope: str = "common", writes: str = NOTHING) -> Check:
    return _c(
        f"decode-{what.replace(' ', '-')}",
        f"the {what} has a non-zero reserved field, a set undefined bit of a flag field (HV-CONV-001) or an "
        "undefined value of an enumerated field (HV-CONV-002), in field order",
        Status.INVALID_PARAMETER,
        "HV-CONV-001",
        scope,
        writes,
    )


def _device(scope: str = "call", writes: str = NOTHING) -> tuple[Check, ...]:
    """Resolving a device_id (HV-DEV-001..003, HV-NEG-008): malformed, then not permitted, then unknown."""
    return (
        _c(
            "devid-subdevice-flag",
            "subdevice_id is not zero without PVMSI_DEVID_SUBDEVICE",
            Status.INVALID_PARAMETER,
            "HV-DEV-002",
            scope,
            writes,
        ),
        _c(
            "devid-subdevice-bits",
            "subdevice_id has a bit above bit 19 set",
            Status.INVALID_PARAMETER,
            "HV-DEV-002",
            scope,
            writes,
        ),
        _c(
            "devid-subdevice-feature",
            "PVMSI_DEVID_SUBDEVICE is set and feature SUBDEVICE is not in force",
            Status.NOT_PERMITTED,
            "HV-NEG-008",
            scope,
            writes,
        ),
        _c(
            "devid-unknown",
            "no such device (or sub-device) is assigned to this VM",
            Status.UNKNOWN_DEVICE,
            "HV-DEV-001",
            scope,
            writes,
        ),
    )


def _success(what: str, requirement: str) -> Check:
    """The outcome when no check failed (its ``check`` says what the call did and wrote)."""
    return _c("success", what, Status.SUCCESS, requirement, "outcome", "-")


def _target(scope: str, req: str = "HV-ALLOC-006", posted: bool = True, writes: str = NOTHING) -> tuple[Check, ...]:
    """The target of an activation (HV-ALLOC-006, HV-FMT-004, HV-NEG-008)."""
    steps = [
        _c("target-vcpu", "vcpu names no vCPU of the VM", Status.INVALID_PARAMETER, req, scope, writes),
        _c(
            "target-vector",
            "a vector of the target is outside the architecture's range",
            Status.INVALID_PARAMETER,
            req,
            scope,
            writes,
        ),
    ]
    if posted:
        steps += [
            _c(
                "target-align",
                "an MSI block's first identity is not aligned to its vector count where the platform needs it (IMSIC)",
                Status.INVALID_PARAMETER,
                "HV-FMT-004",
                scope,
                writes,
            ),
            _c(
                "target-posted",
                "PVMSI_DELIVERY_POSTED is set and feature POSTED is not in force",
                Status.NOT_PERMITTED,
                "HV-NEG-008",
                scope,
                writes,
            ),
        ]
    return tuple(steps)


def _common(c: CallDef) -> tuple[Check, ...]:
    steps = [FUNCTION, REGISTERS]
    if c.needs_negotiation or c.name == "NEGOTIATE":
        steps.append(_state(c))
    return tuple(steps)


def _entry_can_fail_decoding(c: CallDef) -> bool:
    """Whether the call's entry format has a field decoding can refuse: reserved, flags or enumerated (a free entry,
    one handle, has none, so MSG_FREE has no decode-entry step)."""
    leaves = fast(c.input_entry or "").leaves
    return any(leaf.reserved or leaf.enum_values is not None or leaf.flags_mask is not None for leaf in leaves)


def _batch(c: CallDef, entry: tuple[Check, ...]) -> tuple[Check, ...]:
    """A batch: the header's address and contents, count/start, the device, its claim, both whole blocks (the header
    checks end here: batch_out is written from the next step on, HV-MEM-007), then each entry from start: its
    decoding where its format has a field to refuse, then the entry's own checks."""
    return (
        *_common(c),
        *_block("input", "common", "its header"),
        _decode("batch header"),
        _c(
            "count",
            "count is zero or above the call's batch limit, or start is not below count",
            Status.INVALID_PARAMETER,
            "HV-BATCH-001",
            "header",
        ),
        *_device("header"),
        _c("claimed", "the device is not claimed by this VM", Status.WRONG_STATE, "HV-ALLOC-001", "header"),
        _c(
            "whole-input-page",
            "the whole input block (header and count entries) crosses a 4 KiB page boundary",
            Status.INVALID_ADDRESS,
            "HV-MEM-002",
            "header",
        ),
        _c(
            "whole-input-ram",
            "the whole input block is not all guest RAM",
            Status.INVALID_ADDRESS,
            "HV-MEM-003",
            "header",
        ),
        *_block("output", "header", "batch_out and count results"),
        _c("overlap", "the whole input and output blocks overlap", Status.INVALID_ADDRESS, "HV-MEM-004", "header"),
        *((_decode("entry", "entry", BATCH_OUT),) if _entry_can_fail_decoding(c) else ()),
        *entry,
        _c(
            "yield",
            "the hypervisor stops before count without an error (at least one entry done)",
            Status.INCOMPLETE,
            "HV-BATCH-005",
            "outcome",
            "batch_out and the results of the entries done",
        ),
        _success("every entry from start to count done; batch_out and every result written", "HV-BATCH-007"),
    )


def _e(key: str, check: str, status: Status, requirement: str) -> Check:
    return _c(key, check, status, requirement, "entry", BATCH_OUT)


def _handle(prefix: str) -> tuple[Check, ...]:
    return (
        _e(
            "handle", "the handle is not one this VM holds for the header's device", Status.UNKNOWN_HANDLE, "HV-SEC-003"
        ),
        _e("revoked", f"the message was revoked ({prefix} needs a live message)", Status.REVOKED, "HV-REVOKE-002"),
        _e(
            "index",
            "index is not below the message's vector count, or not zero with PVMSI_ACTENT_BLOCK",
            Status.INVALID_PARAMETER,
            "HV-ACT-007",
        ),
    )


ALLOC_ENTRY: tuple[Check, ...] = (
    _e("kind-claimed", "kind is not one of the kinds claimed for the device", Status.NOT_PERMITTED, "HV-ALLOC-002"),
    _e(
        "vector-count",
        "vector_count is not a power of two from 1 to the device's MSI limit (MSI), or not 1 (MSI-X, IMS)",
        Status.INVALID_PARAMETER,
        "HV-ALLOC-003",
    ),
    _e(
        "slot",
        "slot is not zero (MSI), or not below the MSI-X table size (MSI-X)",
        Status.INVALID_PARAMETER,
        "HV-ALLOC-004",
    ),
    _e("slot-occupied", "the slot already holds a message (reserved or active)", Status.WRONG_STATE, "HV-ALLOC-005"),
    _e(
        "reservation",
        "without PVMSI_ALLOC_ACTIVATE: vcpu, vector or flags is not zero; hint_vcpu is not zero "
        "without PVMSI_ALLOC_LOCALITY_HINT, or names no vCPU with it",
        Status.INVALID_PARAMETER,
        "HV-ACT-002",
    ),
    *_target("entry", writes=BATCH_OUT),
    _e(
        "quota",
        "the per-device or per-VM quota would be exceeded (an MSI block counts its vectors)",
        Status.NO_RESOURCES,
        "HV-SEC-006",
    ),
    _e(
        "remap-share",
        "the VM's share of the remapping table, or the table, has no room",
        Status.NO_RESOURCES,
        "HV-SEC-007",
    ),
)

ACTIVATE_ENTRY: tuple[Check, ...] = (
    *_handle("MSG_ACTIVATE"),
    *_target("entry", writes=BATCH_OUT),
    _e(
        "per-vector",
        "one vector of a block is given a target of its own where the platform gives a block one "
        "target (IMSIC, hv per_vector_targets off)",
        Status.PER_VECTOR_REFUSED,
        "HV-MSI-002",
    ),
)

DEACTIVATE_ENTRY: tuple[Check, ...] = (
    *_handle("MSG_DEACTIVATE"),
    _e(
        "per-vector",
        "one vector of a multi-vector block is named where the platform deactivates a block whole",
        Status.PER_VECTOR_REFUSED,
        "HV-MSI-002",
    ),
    _e("not-active", "no vector named is active", Status.NOT_ACTIVE, "HV-ACT-005"),
)

FREE_ENTRY: tuple[Check, ...] = (
    _e("handle", "the handle is not one this VM holds for the header's device", Status.UNKNOWN_HANDLE, "HV-SEC-003"),
)


def _neg_out(refused: str) -> str:
    return f"negotiate_out: features 0, refused {refused}; the value register 0"


def _orders() -> dict[str, tuple[Check, ...]]:
    by = {c.name: c for c in CALLS}
    device_io = (*_block("input"), *_block("output"), DISJOINT)
    return {
        "VERSION": (*_common(by["VERSION"]), _success("the highest version implemented", "HV-DISC-003")),
        "GET_INFO": (*_common(by["GET_INFO"]), *_block("output"), _success("hv_info written", "HV-DISC-004")),
        "NEGOTIATE": (
            *_common(by["NEGOTIATE"]),
            *device_io,
            _decode("input block"),
            _c(
                "version",
                "version_major is not the hypervisor's, or version_minor is above its own",
                Status.VERSION_MISMATCH,
                "HV-NEG-001",
            ),
            _c(
                "unoffered",
                "features has a bit GET_INFO did not offer (an undefined bit is never offered)",
                Status.INVALID_PARAMETER,
                "HV-NEG-002",
                writes=_neg_out("= the bits not offered"),
            ),
            _c(
                "no-kind",
                "features has none of PVMSI_F_MSI, PVMSI_F_MSIX, PVMSI_F_IMS",
                Status.INVALID_PARAMETER,
                "HV-NEG-003",
                writes=_neg_out("0"),
            ),
            _c(
                "required",
                "features lacks a bit of features_required",
                Status.FEATURES_REFUSED,
                "HV-NEG-004",
                writes=_neg_out("= the required bits missing"),
            ),
            _success("the features in force, the VM NEGOTIATED; negotiate_out written", "HV-NEG-005"),
        ),
        "RESET": (*_common(by["RESET"]), _success("every claim ended, the VM OPEN", "HV-RESET-001")),
        "DEVICE_QUERY": (
            *_common(by["DEVICE_QUERY"]),
            *device_io,
            _decode("input block"),
            *_device(),
            _success("device_info written", "HV-DEV-004"),
        ),
        "DEVICE_CLAIM": (
            *_common(by["DEVICE_CLAIM"]),
            *_block("input"),
            _decode("input block"),
            *_device(),
            _c(
                "kinds",
                "kinds is empty or names a kind the device does not support",
                Status.INVALID_PARAMETER,
                "HV-DEV-006",
            ),
            _c(
                "kinds-negotiated",
                "kinds names a kind whose feature is not in force",
                Status.NOT_PERMITTED,
                "HV-NEG-008",
            ),
            _c("claimed", "the device is already claimed", Status.WRONG_STATE, "HV-DEV-007"),
            _c("emulated", "MSI or MSI-X is claimed and enabled through emulation", Status.WRONG_STATE, "HV-DEV-007"),
            _c("claim-limit", "the VM holds max_claimed_devices claims", Status.NO_RESOURCES, "HV-DEV-008"),
            _success("the device claimed, emulation of the kinds stopped", "HV-DEV-009"),
        ),
        "DEVICE_RELEASE": (
            *_common(by["DEVICE_RELEASE"]),
            *_block("input"),
            _decode("input block"),
            *_device(),
            _c("not-claimed", "the device is not claimed", Status.WRONG_STATE, "HV-DEV-010"),
            _success("the claim ended, its messages freed", "HV-DEV-011"),
        ),
        "MSG_ALLOC": _batch(by["MSG_ALLOC"], ALLOC_ENTRY),
        "MSG_ACTIVATE": _batch(by["MSG_ACTIVATE"], ACTIVATE_ENTRY),
        "MSG_DEACTIVATE": _batch(by["MSG_DEACTIVATE"], DEACTIVATE_ENTRY),
        "MSG_FREE": _batch(by["MSG_FREE"], FREE_ENTRY),
        "EVENT_CONFIG": (
            *_common(by["EVENT_CONFIG"]),
            *_block("input"),
            _decode("input block"),
            *_target("call", "HV-EVT-001", posted=False),
            _c(
                "disable-target",
                "PVMSI_EVTCFG_ENABLE is clear and vcpu or vector is not zero",
                Status.INVALID_PARAMETER,
                "HV-EVT-001",
            ),
            _success("the notification target registered or cleared", "HV-EVT-001"),
        ),
        "EVENT_FETCH": (
            *_common(by["EVENT_FETCH"]),
            *_block("output", size="a whole page"),
            _success("every unacknowledged event written, oldest first", "HV-EVT-004"),
        ),
        "EVENT_ACK": (
            *_common(by["EVENT_ACK"]),
            *_block("input"),
            _decode("input block"),
            _c("seq", "seq was never issued (not below event_header.next_seq)", Status.INVALID_PARAMETER, "HV-EVT-006"),
            _success("the events up to seq removed", "HV-EVT-006"),
        ),
    }


#: Call name -> its check order, in order (step i is ``CHECKS[name][i - 1]``).
CHECKS: MappingProxyType[str, tuple[Check, ...]] = MappingProxyType(_orders())


def checks_of(name: str) -> tuple[Check, ...]:
    """The check order of call ``name``."""
    return CHECKS[name]


def step_of(name: str, key: str) -> int:
    """The step number (1-based) of check ``key`` of call ``name``."""
    for i, chk in enumerate(CHECKS[name], 1):
        if chk.key == key:
            return i
    raise KeyError(f"{name} has no check {key!r}")


def statuses_of(name: str) -> frozenset[Status]:
    """Every status call ``name`` can return."""
    return frozenset(chk.status for chk in CHECKS[name])


def dump_checks(name: str) -> list[dict[str, Any]]:
    """The check order of call ``name`` as ``pvmsi spec dump --json`` gives it."""
    return [chk.as_dict(i) for i, chk in enumerate(CHECKS[name], 1)]


def _check() -> None:
    names = {c.name for c in CALLS}
    if set(CHECKS) != names:
        raise ValueError(f"check orders {sorted(set(CHECKS) ^ names)} missing or extra")
    for name, order in CHECKS.items():
        keys = [chk.key for chk in order]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{name}: duplicate check keys")
        for chk in order:
            if chk.scope not in SCOPES:
                raise ValueError(f"{name}: scope {chk.scope}")


_check()
