"""The guest suite's checks of each device access a guest under test makes: what it writes into a slot whose
kind it claimed (the pair the hypervisor handed out, GUEST-ALLOC-*, GUEST-NEG-004, GUEST-FMT-001, GUEST-SEC-001),
and that a slot holds its pair in force before the guest unmasks or enables it (GUEST-ACT-001, GUEST-FLR-001)."""

from __future__ import annotations

from ..spec.constants import MsgKind
from ..spec.harness_constants import DeviceOp
from ..spec.kinds import kind_bit
from .guest_host_knobs import POISON_ADDRESS
from .guest_host_records import DeviceKey, DeviceRecord, name_of
from .guest_host_state import HostState


class DeviceChecks(HostState):
    """The checks of one recorded device access, each breach reported through :meth:`HostState.violate`."""

    def _check_device_op(self, rec: DeviceRecord) -> None:
        key, kind, slot = rec.device, rec.kind, rec.slot
        claimed = bool(self.claimed_kinds(key) & kind_bit(kind)) if kind in MsgKind._value2member_map_ else False
        where = (key, kind, slot)
        kname = MsgKind(kind).name if kind in MsgKind._value2member_map_ else f"kind {kind}"
        label = f"{name_of(key)} {kname}[{slot}]"
        if rec.op is DeviceOp.PROGRAM:
            if claimed and kind == MsgKind.MSI:
                # The explicit model: a claimed MSI capability holds the pair the hypervisor wrote (HV-EMU-002).
                self.violate("GUEST-EMU-001", f"{label}: wrote {rec.address:#x}/{rec.data:#x} into a claimed MSI")
            elif claimed:
                self._check_pair(rec, where, label)
            elif kind == MsgKind.IMS:
                self._check_unclaimed_ims(rec, label)
            self.programmed[where] = (rec.address, rec.data, rec.vectors)
            if kind != MsgKind.MSI:
                self.masked[where] = True  # the control word is written last, masked (harness DeviceOp PROGRAM)
        elif rec.op is DeviceOp.MASK:
            self.masked[where] = True
        elif rec.op is DeviceOp.UNMASK:
            self.masked[where] = False
            if claimed:
                self._check_before_live(where, label, "unmasking")
        elif rec.op is DeviceOp.ENABLE:
            self.enabled[(key, kind)] = True
            if claimed:
                for m in self.live().values():
                    w = (m.device, int(m.kind), m.slot)
                    if (
                        m.device == key
                        and int(m.kind) == kind
                        and (kind == MsgKind.MSI or not self.masked.get(w, True))
                    ):
                        self._check_before_live(w, f"{name_of(key)} {m.kind.name}[{m.slot}]", "enabling")
            elif not self.negotiated and self.discovery == "present" and kind != MsgKind.IMS:
                self.enabled_before_negotiate.append(f"{MsgKind(kind).name} on {name_of(key)}")
        elif rec.op is DeviceOp.DISABLE:
            self.enabled[(key, kind)] = False

    def _check_unclaimed_ims(self, rec: DeviceRecord, label: str) -> None:
        """IMS through an identity not claimed for it (a sub-device's slots through its function, another
        sub-device): no pair pvmsi handed out for another identity may go there (GUEST-SEC-001)."""
        owners = sorted(
            {
                name_of(m.device)
                for m in self.live().values()
                if m.device != rec.device and (m.address, m.data) == (rec.address, rec.data)
            }
        )
        if owners:
            self.violate(
                "GUEST-SEC-001", f"{label} (IMS not claimed through this identity): wrote the pair of {owners[0]}"
            )

    def _check_pair(self, rec: DeviceRecord, where: tuple[DeviceKey, int, int], label: str) -> None:
        pair = (rec.address, rec.data)
        m = self.live_at(*where)
        if m is not None and not m.active:  # a reserved message has no pair in force (HV-ACT-001)
            self.violate("GUEST-ACT-001", f"{label}: wrote {rec.address:#x}/{rec.data:#x} for a reserved message")
            return
        if m is not None and pair == (m.address, m.data) and (rec.kind != MsgKind.MSI or rec.vectors == m.count):
            if where in self.rewrite_needed:
                if not self.masked.get(where, True) and self.kind_on(rec.device, rec.kind):
                    self.violate("GUEST-ALLOC-002", f"{label}: new pair written while the slot is unmasked")
                del self.rewrite_needed[where]
            return
        if m is not None and pair == (m.address, m.data):
            self.violate("GUEST-ALLOC-001", f"{label}: MSI written with {rec.vectors} vectors, allocated {m.count}")
            return
        mine = {(x.address, x.data): x for x in self.live().values()}
        if rec.address == POISON_ADDRESS:
            self.violate("GUEST-CONV-001", f"{label}: wrote {rec.address:#x}/{rec.data:#x}, poison of a failed call")
        elif pair in mine and mine[pair].device != rec.device:
            self.violate("GUEST-SEC-001", f"{label}: wrote the pair of {name_of(mine[pair].device)}")
        elif pair in mine:
            self.violate("GUEST-ALLOC-001", f"{label}: wrote the pair of slot {mine[pair].slot}, not of this slot")
        elif where in self.rewrite_needed and self.stale.get(where) == pair:
            self.violate("GUEST-ALLOC-002", f"{label}: wrote the pair in force before the retarget (REWRITE was set)")
        elif m is None:
            self.violate("GUEST-NEG-004", f"{label}: wrote {rec.address:#x}/{rec.data:#x}, no message holds this slot")
        elif rec.data == m.data:
            self.violate(
                "GUEST-FMT-001", f"{label}: wrote address {rec.address:#x}, the call returned {m.address:#x} (as is)"
            )
        else:
            self.violate(
                "GUEST-NEG-004",
                f"{label}: wrote {rec.address:#x}/{rec.data:#x}; the call returned {m.address:#x}/{m.data:#x}",
            )

    def _check_before_live(self, where: tuple[DeviceKey, int, int], label: str, doing: str) -> None:
        m = self.live_at(*where)
        if m is not None and not m.active:  # GUEST-ACT-001: activate first
            self.violate("GUEST-ACT-001", f"{doing} {label}, whose message is reserved, not activated")
            return
        if m is None or where[1] == MsgKind.MSI:  # a claimed MSI capability: the hypervisor wrote it (HV-EMU-002)
            return
        got = self.programmed.get(where)
        if got is not None and got[:2] == (m.address, m.data):
            return
        rid = "GUEST-FLR-001" if where[0][:3] in self.flr_reset else "GUEST-ALLOC-001"
        have = f"{got[0]:#x}/{got[1]:#x}" if got else "nothing"
        self.violate(rid, f"{doing} {label}, which holds {have}, not its pair {m.address:#x}/{m.data:#x}")
