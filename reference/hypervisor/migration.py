"""Live migration of a VM's pvmsi state (spec "Reset, FLR, hot-unplug and migration": HV-MIG-001..005).

The source exports the state as plain JSON-able data; the destination imports it, re-claims the devices at the
same guest identities and programs interrupt remapping for every message at its target: at the same table index
where that index is free on the destination (the pair the guest wrote keeps delivering), at another one where it
is not (a host whose table holds other entries there, another platform's format): the pair changes. Either way
the destination queues REFETCH (HV-MIG-002); the guest re-activates every message, and the first re-activation
of a changed one returns REWRITE with the new pair and injects one interrupt at its target (HV-MIG-004).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ...spec.constants import EventType, MsgKind, RevokeReason
from ...spec.states import VmState
from .config import HypervisorConfig
from .eventqueue import Event
from .ports import VmPort
from .vmstate import Claim, DeviceKey, HandleSource, Message, VmPvmsi

if TYPE_CHECKING:
    from .core import HypervisorCore

#: The GET_INFO fields (the platform: message_format) whose change the destination reports with LIMITS_CHANGED
#: (HV-MIG-005).
LIMIT_FIELDS = ("platform", "max_batch", "max_claimed_devices", "max_messages_per_vm", "max_messages_per_device")


class MigrationError(RuntimeError):
    """The destination cannot host the VM (a device missing, no remapping entry left): the migration aborts."""


def _key(raw: list[Any]) -> DeviceKey:
    return (int(raw[0]), int(raw[1]), int(raw[2]), None if raw[3] is None else int(raw[3]))


def export_vm(core: HypervisorCore, vm: VmPort) -> dict[str, Any]:
    """The VM's pvmsi state as JSON-able data: everything HV-MIG-001 keeps, the event queue included."""
    st = core.state_of(vm)
    return {
        "state": st.state.value,
        "features": st.features,
        "config": dataclasses.asdict(st.config),
        "handle_counter": st.handles.counter,
        "claims": [{"device": list(key), "kinds": c.kinds} for key, c in st.claims.items()],
        "messages": [
            {**dataclasses.asdict(m), "device": list(m.device), "kind": int(m.kind)} for m in st.messages.values()
        ],
        "events": {
            "next_seq": st.events.next_seq,
            "target": None if st.events.target is None else list(st.events.target),
            "pending": [
                {
                    "seq": e.seq,
                    "type": int(e.type),
                    "reason": int(e.reason),
                    "device": None if e.device is None else list(e.device),
                    "handle": e.handle,
                }
                for e in st.events.pending
            ],
        },
        "stale": sorted(st.stale),
    }


def evict_vm(core: HypervisorCore, vm: VmPort) -> None:
    """The source side after export: release the VM's remapping entries and forget its state (the device
    assignment and emulation switches travel with the VM, as VFIO device state does)."""
    st = core.state_of(vm)
    for m in st.messages.values():
        core.release_remapping(m)
    core.forget_vm(vm)


def import_vm(
    core: HypervisorCore, vm: VmPort, data: dict[str, Any], config: HypervisorConfig | None = None
) -> list[int]:
    """The destination side: rebuild the state, program remapping for every message at its target (HV-MIG-002),
    queue REFETCH, and LIMITS_CHANGED when ``config`` (the destination's, default the source's) reports other
    limits (HV-MIG-005). Returns the handles whose pair changed."""
    source_config = HypervisorConfig(**data["config"])
    config = config or source_config
    counter = int(data["handle_counter"])
    seed = core.config.handle_seed  # a seeded host (reproducible runs) seeds the destination's handles too
    handles = HandleSource(None if seed is None else seed + vm.vm_id + counter)
    st = VmPvmsi(handles, config, VmState(data["state"]), int(data["features"]))
    st.handles.counter = counter  # never reissue a handle (HV-SEC-005)
    _import_events(st, data.get("events"))
    st.stale = {int(h) for h in data.get("stale", [])}
    for c in data["claims"]:
        key = _key(c["device"])
        dev = vm.device(*key)
        if dev is None:
            raise MigrationError(f"the destination has no device at {key}")
        st.claims[key] = Claim(dev, int(c["kinds"]), dev.source)
        vm.set_emulation(dev, int(c["kinds"]), trapped=False)  # HV-MIG-003: the claim holds
    changed = []
    for raw in data["messages"]:
        key = _key(raw["device"])
        claim = st.claims[key]
        targets = [None if t is None else (int(t[0]), int(t[1]), bool(t[2])) for t in raw.get("targets", [])]
        m = Message(**{**raw, "device": key, "kind": MsgKind(raw["kind"]), "targets": targets})
        if not m.revoked and not place_message(core, vm, claim, m):
            raise MigrationError(f"no remapping entries left for handle {m.handle:#x}")
        if not m.revoked:
            for i, t in enumerate(m.targets):  # a vector's own target, or reserved (HV-MSI-001, HV-ACT-001)
                block = (m.vcpu, m.vector + i, m.posted)
                if t != block:
                    vcpu, vector, posted = t if t is not None else block
                    core.remap.program_vector(m.irte, i, vcpu=vcpu, vector=vector, posted=posted, present=t is not None)
        if not m.revoked and m.active and core.remap.compose(m.irte) != (m.address, m.data):
            # HV-MIG-004: the guest still holds the old pair (m.address, m.data); its first re-activation answers
            # REWRITE. A claimed MSI capability the hypervisor writes itself, now (HV-EMU-002).
            st.stale.add(m.handle)
            changed.append(m.handle)
            if m.kind is MsgKind.MSI:
                address, data_ = core.remap.compose(m.irte)
                claim.device.program_msi(address, data_, m.count)
        st.messages[m.handle] = m
        claim.slots.add((m.kind, m.slot))
        claim.vectors += m.count
        st.vectors += m.count
    core.adopt_vm(vm, st)
    core.queue_event(vm, EventType.REFETCH)  # HV-MIG-002
    if any(getattr(config, f) != getattr(source_config, f) for f in LIMIT_FIELDS):
        core.queue_event(vm, EventType.LIMITS_CHANGED)  # HV-MIG-005
    return changed


def place_message(core: HypervisorCore, vm: VmPort, claim: Claim, m: Message) -> bool:
    """Program remapping for a migrated message at its target: at its old index if the destination has it free
    (its pair stays), else wherever there is room (its pair changes); False when there is none."""
    params: dict[str, Any] = {
        "vm_id": vm.vm_id,
        "vcpu": m.vcpu,
        "vector": m.vector,
        "source": claim.source,
        "posted": m.posted,
        "slot": (claim.source.pasid, int(m.kind), m.slot),  # HV-QUOTA-004 as on the source
    }
    try:
        kept = core.remap.alloc_at(m.irte, m.count, **params)
    except ValueError:  # an index of another platform's format: none such on the destination
        kept = False
    if kept:
        return True
    base = core.remap.alloc(m.count, **params)
    if base is None:
        return False
    m.irte = base
    return True


def _import_events(st: VmPvmsi, raw: dict[str, Any] | None) -> None:
    """The event queue and the notification target travel with the VM (HV-MIG-001, HV-EVT-003)."""
    if raw is None:
        return
    st.events.next_seq = int(raw["next_seq"])
    st.events.target = None if raw["target"] is None else (int(raw["target"][0]), int(raw["target"][1]))
    st.events.pending = [
        Event(
            int(e["seq"]),
            EventType(e["type"]),
            RevokeReason(e["reason"]),
            None if e["device"] is None else _key(e["device"]),
            int(e["handle"]),
        )
        for e in raw["pending"]
    ]
