"""The guest suite's checks of each hypercall a guest under test makes, before the model answers it: the input
block decoded (byte order, reserved fields, GEN-CONV-*), the registers (GEN-CALL-001, GUEST-CALL-001), where the
blocks lie (GUEST-MEM-*, GUEST-CVM-001), and the call's place in the guest's sequence (discovery, negotiation,
claims, resumption of an INCOMPLETE batch, handles it still holds)."""

from __future__ import annotations

from typing import Any

from ..spec.calls import BATCH_CALLS, CALLS_BY_FN
from ..spec.codec import DecodeError, decode
from ..spec.constants import FunctionNumber, MsgKind
from ..spec.extension import VENDOR_FEATURES
from ..spec.formats import FORMATS
from ..spec.kinds import kind_bit
from ..spec.layout import layout_of
from ..spec.version import VERSION_MAJOR, VERSION_MINOR
from .guest_host_knobs import KNOWN_1_0, POISON_HANDLE
from .guest_host_records import HDR, OUT_HDR, CallRecord, fn_name, name_of
from .guest_host_state import PAGE, VCPUS, HostState


class CallChecks(HostState):
    """The checks of one recorded hypercall, each breach reported through :meth:`HostState.violate`."""

    def _decode(self, rec: CallRecord) -> None:
        call = CALLS_BY_FN.get(rec.fn)
        if call is None or call.input is None:
            return
        fmt = FORMATS[call.input].struct
        size = layout_of(fmt).size
        try:
            rec.decoded = decode(fmt, rec.in_block[:size])
            if rec.fn in BATCH_CALLS:
                efmt = BATCH_CALLS[rec.fn].entry_format
                esize = layout_of(efmt).size
                count = int(rec.decoded.count)
                if HDR + count * esize != len(rec.in_block):
                    self.violate(
                        "GEN-CONV-001",
                        f"{fn_name(rec.fn)}: batch_in.count reads {count} (little-endian), the block shipped holds "
                        f"{(len(rec.in_block) - HDR) / esize:g} entries",
                    )
                for i in range(min(count, (len(rec.in_block) - HDR) // esize)):
                    rec.entries.append(decode(efmt, rec.in_block[HDR + i * esize : HDR + (i + 1) * esize]))
        except DecodeError as e:
            rid = "GEN-CONV-002" if "reserved" in e.path else "GEN-CONV-003" if "bits" in e.reason else "GEN-CONV-001"
            self.violate(rid, f"{fn_name(rec.fn)} input block: {e}")
            return
        dev = getattr(rec.decoded, "device", rec.decoded if call.input == "device_id" else None)
        if dev is not None:
            pasid = int(dev.subdevice_id) if dev.flags & 1 else None
            if pasid is not None and pasid > 0xFFFFF:
                self.violate("GEN-CONV-001", f"{fn_name(rec.fn)}: subdevice_id {pasid:#x} (byte order?)")
            rec.device = (int(dev.segment), int(dev.bus), int(dev.devfn), pasid)
        for entry in rec.entries:
            vector = int(getattr(entry, "vector", 0))
            if vector > 0xFFFF and int.from_bytes(vector.to_bytes(4, "little"), "big") <= 0xFF:
                self.violate("GEN-CONV-001", f"{fn_name(rec.fn)}: vector {vector:#x} is a byte-swapped vector")
            self._check_identity_order(rec, entry)

    def _check_identity_order(self, rec: CallRecord, entry: Any) -> None:
        """GEN-CONV-001: an identity field of an entry (vcpu, handle, MSI-X slot, vector index, vector_count) that
        names nothing as little-endian but something the guest holds once its bytes are reversed."""

        def swapped(value: int, size: int) -> int:
            return int.from_bytes(value.to_bytes(size, "little"), "big")

        found: list[str] = []
        vcpu = int(getattr(entry, "vcpu", 0))
        if vcpu >= VCPUS and swapped(vcpu, 4) < VCPUS:
            found.append(f"vcpu {vcpu:#x}")
        handle = int(getattr(entry, "handle", 0))
        if handle and handle not in self.issued and swapped(handle, 8) in self.issued:
            found.append(f"handle {handle:#x}")
        if int(getattr(entry, "kind", -1)) == MsgKind.MSIX:
            slot = int(entry.slot)
            if slot > 0x7FF and swapped(slot, 4) <= 0x7FF:
                found.append(f"MSI-X slot {slot:#x}")
        index = int(getattr(entry, "index", 0))
        if index > 0xFF and swapped(index, 2) < 32:
            found.append(f"index {index:#x}")
        count = int(getattr(entry, "vector_count", 1))
        if count > 0xFF and swapped(count, 2) <= 32:
            found.append(f"vector_count {count:#x}")
        for what in found:
            self.violate("GEN-CONV-001", f"{fn_name(rec.fn)}: {what} reads right only byte-swapped (big-endian?)")

    def _check_registers(self, rec: CallRecord) -> None:
        if rec.args[2] or rec.args[3]:
            self.violate(
                "GUEST-CALL-001", f"{fn_name(rec.fn)} with arg2={rec.args[2]:#x} arg3={rec.args[3]:#x} (reserved)"
            )
        call = CALLS_BY_FN.get(rec.fn)
        if call is None:
            self.violate("GEN-CALL-001", f"function number {rec.fn:#x} is not a pvmsi 1.0 call")
            return
        if (call.input is None) != (rec.args[0] == 0) or (call.output is None) != (rec.args[1] == 0):
            self.violate(
                "GEN-CALL-001",
                f"{call.name}: arg0/arg1 = {rec.args[0]:#x}/{rec.args[1]:#x}, the convention wants "
                f"{'the input block' if call.input else 'zero'} / {'the output block' if call.output else 'zero'}",
            )

    def _block_sizes(self, rec: CallRecord) -> tuple[int, int]:
        call = CALLS_BY_FN.get(rec.fn)
        if call is None:
            return 0, 0
        if rec.fn in BATCH_CALLS:
            efmt, rfmt = BATCH_CALLS[rec.fn].entry_format, BATCH_CALLS[rec.fn].result_format
            count = len(rec.entries) if rec.decoded is not None else 0
            return HDR + count * layout_of(efmt).size, OUT_HDR + count * layout_of(rfmt).size
        in_size = layout_of(FORMATS[call.input].struct).size if call.input else 0
        out_size = layout_of(FORMATS[call.output].struct).size if call.output else 0
        return in_size, out_size

    def _check_blocks(self, rec: CallRecord) -> None:
        in_size, out_size = self._block_sizes(rec)
        mem = self.svm.vm.memory
        blocks = [("input", rec.args[0], in_size), ("output", rec.args[1], out_size)]
        for what, gpa, size in blocks:
            if not gpa or not size:
                continue
            problems = []
            if gpa % 8:
                problems.append("not 8-byte aligned")
            if gpa // PAGE != (gpa + size - 1) // PAGE:
                problems.append("crosses a 4 KiB page")
            if not mem.is_ram(gpa, size):
                problems.append("not guest RAM")
            if self.knobs.confidential and self.shared and not self.shared[0] <= gpa < gpa + size <= self.shared[1]:
                self.violate(  # GUEST-CVM-001: the host of a confidential VM cannot reach private memory
                    "GUEST-CVM-001",
                    f"{fn_name(rec.fn)} {what} block at {gpa:#x} outside the shared pages "
                    f"{self.shared[0]:#x}-{self.shared[1]:#x}",
                )
            if problems:
                self.violate(
                    "GUEST-MEM-001", f"{fn_name(rec.fn)} {what} block at {gpa:#x} ({size} bytes): {', '.join(problems)}"
                )
        (_, a, an), (_, b, bn) = blocks
        if a and b and an and bn and a < b + bn and b < a + an:
            self.violate("GUEST-MEM-002", f"{fn_name(rec.fn)} input {a:#x}+{an} overlaps output {b:#x}+{bn}")
        if in_size and len(rec.in_block) < in_size:
            self.violate(
                "GEN-CALL-001", f"{fn_name(rec.fn)}: {len(rec.in_block)} input bytes shipped, the call reads {in_size}"
            )

    def _check_sequence(self, rec: CallRecord) -> None:
        fn, name = rec.fn, fn_name(rec.fn)
        broken = self.probe.violation()  # GUEST-ABI-001..003: the platform's discovery found pvmsi first
        if broken is not None:
            self.violate(broken[0], f"{name}: {broken[1]}")
        if fn != FunctionNumber.VERSION:
            if self.discovery is None:
                self.violate("GUEST-DISC-001", f"{name} issued before VERSION (discovery)")
            elif self.discovery == "absent":
                self.violate("GUEST-DISC-001", f"{name} issued although VERSION showed pvmsi absent")
            elif self.discovery == "major":
                self.violate("GUEST-DISC-002", f"{name} issued although VERSION reported another major version")
        if self.pending_resume is not None:
            p = self.pending_resume
            same = fn == p.fn and rec.in_block[:16] == p.in_block[:16] and rec.in_block[HDR:] == p.in_block[HDR:]
            if not same or rec.start != p.value:
                self.violate(
                    "GUEST-BATCH-001",
                    f"{fn_name(p.fn)} stopped INCOMPLETE at next_index {p.value}; the next call was {name}"
                    + (f" with start {rec.start}" if same else " with other blocks"),
                )
            self.pending_resume = None
        if fn == FunctionNumber.NEGOTIATE and rec.decoded is not None:
            self._check_negotiate(rec)
        if self.refused and fn >= FunctionNumber.DEVICE_QUERY:
            self.violate("GUEST-NEG-003", f"{name} issued after NEGOTIATE failed (the guest must stay emulated)")
        key = rec.device
        if key is None:
            return
        if fn == FunctionNumber.DEVICE_CLAIM and rec.decoded is not None:
            kinds = int(rec.decoded.kinds)
            for kind in (MsgKind.MSI, MsgKind.MSIX):
                pci = self.svm.pci(key[0], key[1], key[2])
                legacy = self.hv.system.platform.legacy
                if (
                    kinds & kind_bit(kind)
                    and pci is not None
                    and key[3] is None
                    and legacy.enabled_through_emulation(pci, kind)
                ):
                    self.violate("GUEST-DEV-001", f"DEVICE_CLAIM of {kind.name} on {name_of(key)} while it is enabled")
            if key not in self.queried:
                self.violate("GUEST-DEV-002", f"DEVICE_CLAIM of {name_of(key)} without a DEVICE_QUERY first")
        if fn in (FunctionNumber.DEVICE_RELEASE, FunctionNumber.MSG_FREE) and key[:3] in self.unplugged:
            self.violate("GUEST-UNPLUG-001", f"{name} for {name_of(key)}, which was hot-unplugged")
        if fn == FunctionNumber.DEVICE_RELEASE:
            # GUEST-DEV-003, per kind: every message freed; MSI and MSI-X disabled; IMS, which has no kind-wide
            # enable, with every slot the guest wrote masked.
            left = [m for m in self.live().values() if m.device == key]
            on = [
                MsgKind(k).name
                for (d, k), v in self.enabled.items()
                if d == key and v and k != MsgKind.IMS and self.claimed_kinds(key)
            ]
            ims = self.unmasked_ims(key) if self.claimed_kinds(key) & kind_bit(MsgKind.IMS) else []
            if left or on or ims:
                self.violate(
                    "GUEST-DEV-003",
                    f"DEVICE_RELEASE of {name_of(key)} with {len(left)} messages live, {on or 'no'} kinds enabled "
                    f"and {f'IMS slots {ims}' if ims else 'no IMS slot'} unmasked",
                )
        if fn in (FunctionNumber.MSG_ACTIVATE, FunctionNumber.MSG_FREE):
            live = self.live()
            for i, e in enumerate(rec.entries):
                if i < rec.start:
                    continue
                h = int(e.handle)
                m = live.get(h)
                if m is not None and m.device == key:
                    if fn == FunctionNumber.MSG_FREE:
                        slot = (key, int(m.kind), m.slot)
                        if not self.masked.get(slot, True) and self.kind_on(key, int(m.kind)):
                            self.violate(
                                "GUEST-ALLOC-003",
                                f"MSG_FREE of {m.kind.name}[{m.slot}] on {name_of(key)} while the slot is unmasked",
                            )
                    continue
                if POISON_HANDLE <= h < POISON_HANDLE + 4096:
                    self.violate("GUEST-CONV-001", f"{name} names {h:#x}, read from results a failed call never wrote")
                elif h in self.issued:
                    self.violate("GUEST-ALLOC-004", f"{name} names handle {h:#x}, which is no longer held")
                else:
                    self.violate("GUEST-ALLOC-004", f"{name} names handle {h:#x}, which was never handed out")

    def _check_negotiate(self, rec: CallRecord) -> None:
        features = int(rec.decoded.features)
        unoffered = features & ~self.offered
        if unoffered:
            self.violate("GUEST-NEG-001", f"NEGOTIATE accepts {unoffered:#x}, which GET_INFO did not offer")
        missing = self.knobs.required & ~features
        if missing:
            self.violate("GUEST-NEG-002", f"NEGOTIATE lacks the required bits {missing:#x}")
        unknown = features & ~KNOWN_1_0 & ~VENDOR_FEATURES & self.offered  # vendor bits: GUEST-EXT-001
        if unknown:
            self.violate("GUEST-VER-001", f"NEGOTIATE accepts {unknown:#x}, bits a 1.0 guest does not know")
        major, minor = self.knobs.version
        if rec.decoded.version_major == major and rec.decoded.version_minor > min(minor, VERSION_MINOR):
            self.violate(
                "GUEST-VER-002",
                f"NEGOTIATE asks for minor {rec.decoded.version_minor}: VERSION reported {minor}, a {VERSION_MAJOR}."
                f"{VERSION_MINOR} guest implements {VERSION_MINOR}",
            )
        if rec.decoded.version_major != major and int(rec.decoded.version_major).to_bytes(2, "big") == int(
            major
        ).to_bytes(2, "little"):
            self.violate("GEN-CONV-001", f"NEGOTIATE version_major {rec.decoded.version_major:#x} (byte order)")
        if self.negotiated:
            self.violate("GUEST-NEG-005", "a second NEGOTIATE in one boot")
        if self.enabled_before_negotiate:
            self.violate(
                "GUEST-NEG-005",
                f"NEGOTIATE after enabling {', '.join(self.enabled_before_negotiate)} through emulation",
            )
