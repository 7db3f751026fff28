"""The fuzzer's checks of the host as a whole, beside the model's (:mod:`.fuzz_model`): the books of every VM
against the remapping table, and nothing left of a destroyed VM (spec "Security considerations": HV-SEC-006,
HV-SEC-007, HV-SEC-009; "Allocate, retarget and free": HV-ALLOC-007, HV-FREE-002)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from ..spec.constants import KindMask, MsgKind
from .hypervisor.vmstate import Claim, DeviceKey, Message
from .platform.msi_format import compose
from .platform.requester import Requester
from .system import ReferenceSystem


def check_invariants(system: ReferenceSystem, destroyed: set[int] | frozenset[int] = frozenset()) -> list[str]:
    """Every broken invariant of ``system`` (empty when all hold).

    - per VM: vectors held equal the sum over its messages, per claimed device too; slots held match; every
      message belongs to a claimed device; quotas and the claimed-device limit hold; OPEN means no claims;
    - the remapping table: its occupancy equals the live pvmsi vectors plus the emulator's entries; every live
      message's block is allocated with exactly its size, owned by its VM, delivering to its vCPU and vectors,
      accepting only its device's requester;
    - nothing of a destroyed VM: no pvmsi state, no table entry.
    """
    problems: list[str] = []
    core, table = system.core, system.platform.table
    live = 0
    blocks = table.blocks()
    for vm_id, st in core.vm_states().items():
        cfg = st.config
        if vm_id in destroyed:
            problems.append(f"destroyed VM {vm_id} still has pvmsi state")
        per_device: Counter[DeviceKey] = Counter()
        slots: dict[DeviceKey, set[tuple[MsgKind, int]]] = {}
        for handle, m in st.messages.items():
            if handle != m.handle:
                problems.append(f"VM {vm_id}: message filed under {handle:#x} has handle {m.handle:#x}")
            claim = st.claims.get(m.device)
            if claim is None:
                problems.append(f"VM {vm_id}: message {handle:#x} on unclaimed device {m.device}")
                continue
            per_device[m.device] += m.count
            slots.setdefault(m.device, set()).add((m.kind, m.slot))
            if blocks.get(m.irte) != m.count:
                problems.append(f"VM {vm_id}: message {handle:#x} block {m.irte}+{m.count} is {blocks.get(m.irte)}")
                continue
            src = claim.source
            for i in range(m.count):
                e = table.get(m.irte + i)
                target = m.targets[i] if i < len(m.targets) else None
                want = None if target is None else (vm_id, *target, True)
                got = None if e is None else (e.owner_vm, e.dest_vcpu, e.vector, e.posted, e.present)
                if e is None or (want is not None and got != want) or (want is None and e.present):
                    problems.append(f"VM {vm_id}: IRTE {m.irte + i} of {handle:#x} is {e}, message says {m}")
                elif e.source != Requester(src.segment, src.rid):  # the requester id alone (HV-SEC-002)
                    problems.append(f"VM {vm_id}: IRTE {m.irte + i} accepts {e.source}, device is {src}")
            if (m.address or m.data) and (m.address, m.data) != compose(m.irte):
                problems.append(f"VM {vm_id}: message {handle:#x} pair does not name IRTE {m.irte}")
        total = sum(per_device.values())
        live += total
        if st.vectors != total:
            problems.append(f"VM {vm_id}: vectors {st.vectors} != {total} held by its messages")
        if st.vectors > cfg.max_messages_per_vm:
            problems.append(f"VM {vm_id}: {st.vectors} vectors above the VM quota")
        if len(st.claims) > cfg.max_claimed_devices:
            problems.append(f"VM {vm_id}: {len(st.claims)} claims above max_claimed_devices")
        if st.claims and st.state.name != "NEGOTIATED":
            problems.append(f"VM {vm_id}: claims in state {st.state.name}")
        for key, claim in st.claims.items():
            if claim.vectors != per_device[key]:
                problems.append(f"VM {vm_id}: device {key} counts {claim.vectors}, messages hold {per_device[key]}")
            if claim.vectors > cfg.max_messages_per_device:
                problems.append(f"VM {vm_id}: device {key} above the device quota")
            if claim.slots != slots.get(key, set()):
                problems.append(f"VM {vm_id}: device {key} slots {claim.slots} != {slots.get(key, set())}")
        problems += _msi_capabilities(system, vm_id, st.claims, st.messages.values())
    emulated = sum(len(system.platform.legacy.irte_indices(d)) for d in system.platform.devices)
    parked = table.parked_entries  # freed pvmsi entries kept from other slots of their device (HV-QUOTA-004)
    if table.occupancy != live + emulated + parked:
        problems.append(f"remapping table holds {table.occupancy}, pvmsi {live} + emulation {emulated} + {parked}")
    for vm_id, share in table.shares().items():  # HV-QUOTA-001: a VM's entries stay inside its share
        outside = [b for b, _ in table.blocks_where(owner_vm=vm_id) if not share.first <= b < share.end]
        if outside or table.held(vm_id) > share.limit:
            problems.append(f"VM {vm_id}: {table.held(vm_id)} entries held, {outside} outside its share {share}")
    for vm_id in destroyed:
        if table.blocks_where(owner_vm=vm_id):
            problems.append(f"destroyed VM {vm_id} still owns table entries")
    return problems


def _msi_capabilities(
    system: ReferenceSystem, vm_id: int, claims: Mapping[DeviceKey, Claim], messages: Iterable[Message]
) -> list[str]:
    """The explicit MSI model: a claimed MSI capability holds the pair and Multiple Message Enable of its message
    (HV-EMU-002, HV-EMU-003, HV-EMU-005, HV-EMU-007), or is cleared when it holds none (HV-EMU-004)."""
    problems: list[str] = []
    svm = system.vms.get(vm_id)
    if svm is None:
        return problems
    held = {m.device: m for m in messages if m.kind is MsgKind.MSI}
    for key, claim in claims.items():
        if key[3] is not None or not claim.kinds & KindMask.MSI:
            continue
        pci = svm.pci(key[0], key[1], key[2])
        if pci is None or pci.msi is None:
            continue
        cap, m = pci.msi, held.get(key)
        have = (cap.address, cap.data, cap.vectors_enabled)
        if m is not None and (m.address, m.data) == (0, 0):  # reserved, never activated: nothing written (HV-ACT-001)
            if (cap.address, cap.data) != (0, 0):
                problems.append(f"VM {vm_id}: MSI capability of {pci.name} holds {have} for a reserved message")
        elif m is not None and have != (m.address, m.data & 0xFFFF, m.count):
            problems.append(f"VM {vm_id}: MSI capability of {pci.name} holds {have}, its message {m}")
        elif m is None and (cap.enable, cap.address, cap.data) != (False, 0, 0):
            problems.append(f"VM {vm_id}: MSI capability of {pci.name} holds {have}, enable {cap.enable}, no message")
    return problems
