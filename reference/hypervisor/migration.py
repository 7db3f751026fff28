"""Live migration of a VM's pvmsi state (spec "Reset, FLR, hot-unplug and migration": HV-MIG-001..003).

The source exports the state as plain JSON-able data; the destination imports it, re-claims the devices at the
same guest identities and re-programs interrupt remapping at the *same* table indices, so that every
address/data pair the guest wrote into its devices keeps delivering as before, without the guest doing anything.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ...spec.constants import MsgKind
from ...spec.states import VmState
from .config import HypervisorConfig
from .ports import VmPort
from .vmstate import Claim, HandleSource, Message, VmPvmsi

if TYPE_CHECKING:
    from .core import HypervisorCore


class MigrationError(RuntimeError):
    """The destination cannot reproduce the source's state exactly (HV-MIG-002): the migration must abort."""


def export_vm(core: HypervisorCore, vm: VmPort) -> dict[str, Any]:
    """The VM's pvmsi state as JSON-able data."""
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
    }


def evict_vm(core: HypervisorCore, vm: VmPort) -> None:
    """The source side after export: release the VM's remapping entries and forget its state (the device
    assignment and emulation switches travel with the VM, as VFIO device state does)."""
    st = core.state_of(vm)
    for m in st.messages.values():
        core.remap.release(m.irte)
    core.forget_vm(vm)


def import_vm(core: HypervisorCore, vm: VmPort, data: dict[str, Any]) -> None:
    """The destination side: rebuild the state and re-program remapping at the same indices."""
    config = HypervisorConfig(**data["config"])
    st = VmPvmsi(HandleSource(None), config, VmState(data["state"]), int(data["features"]))
    st.handles.counter = int(data["handle_counter"])  # never reissue a handle (HV-SEC-005)
    for c in data["claims"]:
        key = tuple(c["device"])
        dev = vm.device(key[0], key[1], key[2], key[3])
        if dev is None:
            raise MigrationError(f"the destination has no device at {key}")
        st.claims[(key[0], key[1], key[2], key[3])] = Claim(dev, int(c["kinds"]), dev.source)
        vm.set_emulation(dev, int(c["kinds"]), trapped=False)  # HV-MIG-003: the claim holds
    for raw in data["messages"]:
        d = tuple(raw["device"])
        key = (d[0], d[1], d[2], d[3])
        claim = st.claims[key]
        targets = [None if t is None else (int(t[0]), int(t[1]), bool(t[2])) for t in raw.get("targets", [])]
        m = Message(**{**raw, "device": key, "kind": MsgKind(raw["kind"]), "targets": targets})
        if not core.remap.alloc_at(
            m.irte,
            m.count,
            vm_id=vm.vm_id,
            vcpu=m.vcpu,
            vector=m.vector,
            source=claim.source,
            posted=m.posted,
            slot=(claim.source.pasid, int(m.kind), m.slot),  # HV-QUOTA-004 as on the source
        ):
            raise MigrationError(f"remapping entries {m.irte}+{m.count} are taken on the destination")
        for i, t in enumerate(m.targets):  # a vector's own target, or reserved (HV-MSI-001, HV-ACT-001)
            block = (m.vcpu, m.vector + i, m.posted)
            if t != block:
                vcpu, vector, posted = t if t is not None else block
                core.remap.program_vector(m.irte, i, vcpu=vcpu, vector=vector, posted=posted, present=t is not None)
        if m.active and core.remap.compose(m.irte) != (m.address, m.data):
            raise MigrationError(f"entry {m.irte} would change its pair")  # HV-MIG-002
        st.messages[m.handle] = m
        claim.slots.add((m.kind, m.slot))
        claim.vectors += m.count
        st.vectors += m.count
    core.adopt_vm(vm, st)
