"""The hypervisor the guest suite plays: the reference hypervisor core on the simulated platform, watching.

:class:`HostModel` answers a guest under test: every hypercall runs on a reference VM whose memory mirrors the
blocks the guest ships (its input block is written at ``args[0]``, its output block read back at ``args[1]``),
and every device access the guest makes is applied to the simulated device, so that delivery can be checked end
to end by making the devices fire.  It records every call (registers and blocks) and device access, and checks
each against the guest requirements as it happens; a breach becomes a
:class:`~.guest_host_records.Violation` naming the requirement.

:class:`~.guest_host_knobs.HostKnobs` provoke the behaviour a test needs: pvmsi absent, another version,
offered or required feature bits (also unknown ones), batches that stop with INCOMPLETE, a small device quota (a
batch that fails part-way), a retarget that moves the message to a new remapping entry (REWRITE set), a refused
NEGOTIATE, any status for a call, and kinds left enabled through emulation before the guest boots.  The output
block of every call is filled with plausible-looking poison first, so that a guest relying on output a failed
call did not write is caught (GUEST-CONV-001).

The model is assembled from :mod:`.guest_host_state` (what it holds), :mod:`.guest_call_checks` and
:mod:`.guest_device_checks` (the checks), :mod:`.guest_host_records` (what it records) and
:mod:`.guest_host_knobs` (how it can be made to behave).
"""

from __future__ import annotations

from typing import Any

from ..reference.guest.actions import MaskSlot, ProgramSlot, SetEnabled
from ..reference.platform.vm import GuestMemoryError
from ..spec.calls import BATCH_CALLS, CALLS_BY_FN
from ..spec.codec import encode
from ..spec.constants import FunctionNumber, MsgKind, Status
from ..spec.formats import NEGOTIATE_OUT
from ..spec.harness_constants import DeviceOp, FireOutcome, LifecycleEvent, TrapArch, TrapInstruction
from ..spec.iut import DeviceRef, FireResult, GuestResult
from ..spec.layout import layout_of
from ..spec.version import VERSION_MAJOR, encode_version
from . import guest_events
from .guest_call_checks import CallChecks
from .guest_device_checks import DeviceChecks
from .guest_features import RULE as GUEST_FEATURES_RULE
from .guest_features import unnegotiated_uses
from .guest_host_knobs import LYING_ADDRESS, LYING_CALLS, poison_block
from .guest_host_records import OUT_HDR, CallRecord, DeviceRecord, fn_name, guest_device, key_of, name_of
from .guest_masking import check_msi_rewrite
from .toolkit import status_name


class HostModel(CallChecks, DeviceChecks):
    """:class:`~.iut.GuestHost`: the reference hypervisor with one VM, recording and checking the guest."""

    def end(self, result: GuestResult) -> None:
        """Checks that can only be made once the command is over."""
        if self.pending_resume is not None:
            r = self.pending_resume
            self.violate(
                "GUEST-BATCH-001",
                f"{fn_name(r.fn)} returned INCOMPLETE with next_index {r.value} and was never resumed",
            )
            self.pending_resume = None
        for (key, kind, slot), pair in self.rewrite_needed.items():
            if self.live_at(key, kind, slot) is None and self.knobs.lying_pairs:
                continue  # GUEST-ALLOC-002's exception: the lying pair handed out refused (GUEST-CVM-002), freed
            self.violate(
                "GUEST-ALLOC-002",
                f"retarget set REWRITE for {name_of(key)} {MsgKind(kind).name}[{slot}] (new pair "
                f"{pair[0]:#x}/{pair[1]:#x}) and the guest did not write it",
            )
        self.rewrite_needed.clear()
        live = self.live()
        for m in self.abandoned:
            written = self.programmed.get((m.device, int(m.kind), m.slot), (0, 0, 0))[:2] == (m.address, m.data)
            if m.handle in live and (not live[m.handle].active or not written):  # a reservation is never "written"
                self.violate(
                    "GUEST-BATCH-002",
                    f"entry of {name_of(m.device)} {m.kind.name}[{m.slot}] completed before a failed MSG_ALLOC "
                    f"(handle {m.handle:#x}) was neither freed nor written into its slot",
                )
        self.abandoned.clear()

    # -- hypercalls ----------------------------------------------------------------------------------------------

    def hypercall(
        self, vcpu: int, fn: int, args: tuple[int, int, int, int], in_block: bytes, out_size: int
    ) -> tuple[int, int, bytes]:
        rec = CallRecord(len(self.events), self.command, fn, args, bytes(in_block), out_size)
        self.events.append(rec)
        self._decode(rec)
        self._check_registers(rec)
        self._check_blocks(rec)
        self._check_sequence(rec)
        self.refusals.check_call(self, rec)
        if self.negotiated and rec.device is not None:
            for what in unnegotiated_uses(rec.fn, rec.decoded, rec.entries, rec.device[3], self.granted):
                self.violate(GUEST_FEATURES_RULE, f"{fn_name(rec.fn)}: {what}")
        before = {
            h: (m.address, m.data) for h, m in self.live().items() if m.active
        }  # retargets, not first activations
        status, value, why = self._execute(vcpu, rec)
        rec.status, rec.value = status, value
        self._after(rec, before)
        self.refusals.after(self, rec)
        self.log(
            f"{fn_name(fn)} args=({', '.join(hex(a) for a in args)})"
            + (f" in={in_block.hex()}" if in_block else "")
            + f" -> {status_name(status)} value={value:#x}"
            + (f" out={rec.out_block.hex()}" if rec.out_block and status >= 0 else "")
            + (f" [{why}]" if why else "")
        )
        return status, value, rec.out_block

    def trap(self, vcpu: int, arch: TrapArch, instruction: TrapInstruction, regs: list[int]) -> tuple[bool, list[int]]:
        """A discovery trap of the guest, answered as HostKnobs.probe says (spec "Discovery")."""
        return self.probe.trap(vcpu, arch, instruction, regs, self.log)

    def _execute(self, vcpu: int, rec: CallRecord) -> tuple[int, int, str]:
        """Run the call on the reference VM (blocks mirrored through its memory)."""
        mem = self.svm.vm.memory
        in_gpa, out_gpa = rec.args[0], rec.args[1]
        call = CALLS_BY_FN.get(rec.fn)
        out_fmt = ""
        if call is not None and call.output:
            out_fmt = call.output_entry or call.output
        if rec.out_size and out_gpa and mem.is_ram(out_gpa, rec.out_size):
            mem.write(out_gpa, poison_block(out_fmt, rec.out_size, len(rec.entries)))
        if rec.in_block and in_gpa and mem.is_ram(in_gpa, len(rec.in_block)):
            mem.write(in_gpa, rec.in_block)
        status, value, why = self._answer(vcpu, rec)
        status, value = self.refusals.answer(self, rec, status, value)
        if self.knobs.lying_pairs and rec.fn in LYING_CALLS and status >= 0:
            self._lie(LYING_CALLS[rec.fn], out_gpa, min(value, len(rec.entries)))
        out = b""
        if rec.out_size:
            try:
                out = mem.read(out_gpa, rec.out_size)
            except GuestMemoryError:
                out = bytes(rec.out_size)
        rec.out_block = out
        return status, value, why

    def _lie(self, result_fmt: Any, out_gpa: int, completed: int) -> None:
        """Rewrite the address of each completed result that hands out a pair (an activating MSG_ALLOC,
        MSG_ACTIVATE) to LYING_ADDRESS (guest RAM)."""
        size = layout_of(result_fmt).size
        f = layout_of(result_fmt).field("address")
        mem = self.svm.vm.memory
        for i in range(completed):
            at = out_gpa + OUT_HDR + i * size + f.offset
            if mem.is_ram(at, f.size) and int.from_bytes(mem.read(at, f.size), "little"):
                self.svm.vm.memory.write(at, LYING_ADDRESS.to_bytes(f.size, "little"))

    def _answer(self, vcpu: int, rec: CallRecord) -> tuple[int, int, str]:
        k = self.knobs
        if not k.present:
            return int(Status.NOT_SUPPORTED), 0, "pvmsi absent"
        for fn, status in k.status_for:
            if fn == rec.fn:
                return status, k.status_value, "status forced by the test"
        if rec.fn == FunctionNumber.NEGOTIATE and k.negotiate_status is not None:
            status = k.negotiate_status
            if status in (Status.FEATURES_REFUSED, Status.INVALID_PARAMETER) and self.svm.vm.memory.is_ram(
                rec.args[1], 16
            ):
                refused = self.offered if status == Status.FEATURES_REFUSED else 0
                self.svm.vm.memory.write(rec.args[1], encode(NEGOTIATE_OUT, {"features": 0, "refused": refused}))
            return status, 0, "NEGOTIATE refused by the test"
        result = self.hv.system.hypercall(self.svm, vcpu, rec.fn, rec.args)
        return int(result.status), int(result.value), result.why

    def _after(self, rec: CallRecord, before: dict[int, tuple[int, int]]) -> None:
        fn, status = rec.fn, rec.status
        if fn == FunctionNumber.VERSION:
            if status != Status.SUCCESS:
                self.discovery = "absent"
            elif (rec.value >> 16) & 0xFFFF != VERSION_MAJOR:
                self.discovery = "major"
            else:
                self.discovery = "present"
        elif fn == FunctionNumber.NEGOTIATE:
            if status == Status.SUCCESS:
                self.negotiated += 1
                self.granted = int(rec.value)
            else:
                self.refused = True
        elif fn == FunctionNumber.DEVICE_QUERY and status == Status.SUCCESS and rec.device is not None:
            self.queried.add(rec.device)
        elif fn == FunctionNumber.EVENT_FETCH and status == Status.SUCCESS:
            guest_events.on_fetch(self)
        elif fn == FunctionNumber.EVENT_ACK and status == Status.SUCCESS:
            guest_events.on_ack(self, rec)
        if fn not in BATCH_CALLS or rec.device is None:
            return
        if status == Status.INCOMPLETE:
            self.pending_resume = rec
        live = self.live()
        if fn == FunctionNumber.MSG_ALLOC:
            for r in rec.results():
                if r.status == Status.SUCCESS and r.handle in live:
                    self.issued[int(r.handle)] = rec.device
            if status < 0:
                done = [live[int(r.handle)] for r in rec.results() if r.status == Status.SUCCESS and r.handle in live]
                self.abandoned.extend(done)
        if fn == FunctionNumber.MSG_ACTIVATE:
            for h, pair in before.items():
                m = live.get(h)
                if m is not None and (m.address, m.data) != pair and m.kind is not MsgKind.MSI:  # MSI: HV-EMU-003
                    slot = (m.device, int(m.kind), m.slot)
                    self.rewrite_needed[slot] = (m.address, m.data)
                    self.stale[slot] = pair

    # -- device accesses ---------------------------------------------------------------------------------------

    def device_op(
        self, op: DeviceOp, device: DeviceRef, kind: int, slot: int, address: int, data: int, vectors: int
    ) -> bool:
        key = key_of(device)
        rec = DeviceRecord(len(self.events), self.command, op, key, kind, slot, address, data, vectors)
        self.events.append(rec)
        if op is DeviceOp.PROGRAM and self.knobs.lying_pairs and address == LYING_ADDRESS:
            self.violate("GUEST-CVM-002", f"wrote the lying pair ({address:#x}, {data:#x}) into {name_of(key)}")
        check_msi_rewrite(self, rec)
        self._check_device_op(rec)
        if op is DeviceOp.PROGRAM:
            self.refusals.check_program(self, address, data, name_of(key))
        vm = self.svm.vm
        before = vm.total_exits
        try:
            msg_kind = MsgKind(kind)
            gdev = guest_device(device)
            if op is DeviceOp.PROGRAM:
                self.driver.execute(ProgramSlot(gdev, msg_kind, slot, address, data, max(1, vectors)))
            elif op in (DeviceOp.ENABLE, DeviceOp.DISABLE):
                self.driver.execute(SetEnabled(gdev, msg_kind, op is DeviceOp.ENABLE))
            else:
                self.driver.execute(MaskSlot(gdev, msg_kind, slot, op is DeviceOp.MASK))
            note = ""
        except (KeyError, ValueError, IndexError, GuestMemoryError) as e:
            note = f" (no effect: {e})"
        rec.exited = vm.total_exits > before
        what = (
            f" = {address:#x}/{data:#x}" + (f" x{vectors}" if kind == MsgKind.MSI else "")
            if op is DeviceOp.PROGRAM
            else ""
        )
        kname = MsgKind(kind).name if kind in MsgKind._value2member_map_ else str(kind)
        self.log(f"device {name_of(key)} {op.name} {kname}[{slot}]{what} -> exit={rec.exited}{note}")
        return rec.exited

    # -- the platform -------------------------------------------------------------------------------------------

    def flr(self, dev: DeviceRef) -> None:
        """The device goes through a function-level reset: it forgets its pairs, masks and enables."""
        self.hv.lifecycle(self.vm_id, LifecycleEvent.FLR, dev)
        bdf = key_of(dev)[:3]
        self.flr_reset.add(bdf)
        for table in (self.programmed, self.masked):
            for w in [w for w in table if w[0][:3] == bdf]:
                del table[w]
        for e in [e for e in self.enabled if e[0][:3] == bdf]:
            self.enabled[e] = False
        self.log(f"platform: FLR of {name_of(key_of(dev))}")

    def unplug(self, dev: DeviceRef) -> None:
        """Surprise hot-unplug of the device."""
        self.hv.lifecycle(self.vm_id, LifecycleEvent.HOT_UNPLUG, dev)
        self.unplugged.add(key_of(dev)[:3])
        self.log(f"platform: hot-unplug of {name_of(key_of(dev))}")

    def fire(self, dev: DeviceRef, kind: MsgKind, index: int) -> tuple[FireResult, list[tuple[int, int]]]:
        """Make the device signal one vector; what became of it and what the vCPUs saw."""
        self.hv.collect(self.vm_id)
        r = self.hv.fire(self.vm_id, dev, kind, index)
        got = self.hv.collect(self.vm_id)
        self.log(f"platform: {name_of(key_of(dev))} fires {kind.name}[{index}] -> {r.outcome.name} {got}")
        return r, got

    def msix_exits(self) -> int:
        return self.hv.counters(self.vm_id).msix_exits

    def delivered(self, dev: DeviceRef, kind: MsgKind, index: int, vcpu: int, vector: int) -> str | None:
        """None when ``index`` delivers exactly ``vector`` to ``vcpu``; else what happened."""
        r, got = self.fire(dev, kind, index)
        if r.outcome is FireOutcome.DELIVERED and got == [(vcpu, vector)]:
            return None
        return f"{r.outcome.name}, vCPUs saw {got}"

    def encode_version(self) -> int:
        return encode_version(*self.knobs.version)
