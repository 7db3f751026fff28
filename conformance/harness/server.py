"""The IUT's side of the harness protocol for a hypervisor: frames in, a backend called, frames out.

:class:`HypervisorService` is sans-I/O (``handle(bytes) -> bytes``); :func:`serve` runs it over a channel.
Every bad frame gets an ERROR frame naming the harness status and the byte offset; after a fatal one
(bad magic or length: the stream cannot be resynchronised) the connection is closed.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from ...spec.formats.harness import (
    CONFIG_READ,
    DEVICE_WRITE,
    HELLO,
    HYPERCALL_REQ,
    INTERRUPT_RECORD,
    INTERRUPTS_HDR,
    MEM_ACCESS,
    PAYLOADS,
    TRAP_REQ,
    VM_CONFIG,
)
from ...spec.harness_constants import (
    HARNESS_CONFIG_SPACE_SIZE,
    HARNESS_MAX_DEVICES,
    HARNESS_MAX_MEM_ACCESS,
    HARNESS_MAX_PAYLOAD,
    HARNESS_MAX_RAM_MIB,
    HARNESS_MAX_SESSION_RAM_MIB,
    HARNESS_MAX_VCPUS,
    HARNESS_MAX_VMS,
    REQUESTS_SERVED_BY,
    DeviceProfile,
    DeviceSpace,
    FrameKind,
    HarnessRole,
    HarnessStatus,
    LifecycleEvent,
    TrapArch,
    TrapInstruction,
)
from ...spec.iut import (
    BadAddress,
    BadRequest,
    DeviceRef,
    DeviceSlot,
    HypervisorIUT,
    NoSuchDevice,
    NoSuchVm,
    Unsupported,
    VmKnobs,
)
from ...spec.layout import layout_of
from .frames import KIND_AT, Frame, FrameError, FrameReader, build, build_error, pad8, payload_at

MEM_SIZE_RULE = f"size must be 1..{HARNESS_MAX_MEM_ACCESS}"
CONFIG_READ_RULE = f"offset and size multiples of 4, size at least 4, offset + size at most {HARNESS_CONFIG_SPACE_SIZE}"
VM_CONFIG_RULE = (
    f"vcpus 1..{HARNESS_MAX_VCPUS}, ram_mib 1..{HARNESS_MAX_RAM_MIB}, device_count 0..{HARNESS_MAX_DEVICES}"
)


class ByteSink(Protocol):
    def send(self, data: bytes) -> None: ...


def _has_field(fmt: Any, path: str) -> bool:
    return any(leaf.path == path for leaf in layout_of(fmt).leaves())


def device_ref(wire: Any) -> DeviceRef:
    return DeviceRef(wire.segment, wire.bus, wire.devfn, wire.subdevice_id if wire.flags & 1 else None)


class FrameService:
    """The IUT side of a harness connection, sans-I/O: bytes from the suite in, bytes to send back out.

    Subclasses answer one frame in :meth:`handle`; a frame that does not parse gets an ERROR frame here, and
    after a fatal one (the stream cannot be resynchronised) the service is closed, :meth:`on_fatal` first.
    """

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.closed = False

    @property
    def buffered(self) -> int:
        """Bytes of a frame received but not yet complete (the transport's frame deadline runs while non-zero)."""
        return self.reader.buffered

    def receive(self, data: bytes) -> bytes:
        """Feed bytes from the suite; returns the bytes to send back (possibly several frames)."""
        self.reader.feed(data)
        out: list[bytes] = []  # joined once: replies to many pipelined frames cost linear time
        while not self.closed:
            try:
                frame = self.reader.next_frame()
            except FrameError as e:
                out.append(build_error(e.seq, e.code, e.offset, e.detail, e.kind))
                if e.fatal:
                    self.closed = True
                    out.append(self.on_fatal())
                continue
            if frame is None:
                break
            out.append(self.handle(frame))
        return b"".join(out)

    def handle(self, f: Frame) -> bytes:
        raise NotImplementedError

    def on_fatal(self) -> bytes:
        """What to send after a fatal framing error, before closing."""
        return b""


#: Interrupt records one INTERRUPTS frame holds (the rest stay queued: harness "Sessions", rule 4).
RECORDS_PER_FRAME = (HARNESS_MAX_PAYLOAD - layout_of(INTERRUPTS_HDR).size) // layout_of(INTERRUPT_RECORD).size


class HypervisorService(FrameService):
    """Answers the suite's requests with a :class:`HypervisorIUT` backend, under the session rules of the harness
    appendix ("Sessions"): HELLO first, the session's limits, vCPUs checked, nothing lost by COLLECT."""

    def __init__(self, backend: HypervisorIUT, name: bytes = b"pvmsi-ref") -> None:
        super().__init__()
        self.backend = backend
        self.name = name
        self.greeted = False
        #: vCPUs and MiB of guest RAM of each live VM this session created.
        self.vms: dict[int, tuple[int, int]] = {}
        #: Interrupts collected from the backend that did not fit in one INTERRUPTS frame, per VM.
        self.queued: dict[int, deque[tuple[int, int]]] = {}

    def handle(self, f: Frame) -> bytes:
        if not self.greeted and f.kind < FrameKind.OK and f.kind not in (FrameKind.HELLO, FrameKind.BYE):
            return build_error(f.seq, HarnessStatus.NO_HELLO, KIND_AT, "a session starts with HELLO", int(f.kind))
        try:
            return self._dispatch(f)
        except BadRequest as e:
            body = PAYLOADS[f.kind].fmt
            where = payload_at(body, e.field) if body is not None and _has_field(body, e.field) else 0
            return build_error(f.seq, HarnessStatus.BAD_PAYLOAD, where, str(e), int(f.kind))
        except Unsupported as e:  # an adapter that cannot do this request: the test becomes "unsupported"
            return build_error(f.seq, HarnessStatus.UNSUPPORTED, 0, str(e) or f"{f.kind.name} unsupported", int(f.kind))
        except NoSuchVm as e:
            return build_error(f.seq, HarnessStatus.UNKNOWN_VM, 0, f"no VM {e.args[0]}", int(f.kind))
        except NoSuchDevice as e:
            return build_error(f.seq, HarnessStatus.UNKNOWN_DEVICE, 0, f"no device {e.args[0]}", int(f.kind))
        except BadAddress as e:
            return build_error(f.seq, HarnessStatus.BAD_ADDRESS, 0, str(e), int(f.kind))
        except Exception as e:  # the harness must answer, whatever the backend did (rule 7: INTERNAL)
            return build_error(f.seq, HarnessStatus.INTERNAL, 0, f"{type(e).__name__}: {e}", int(f.kind))

    def _dispatch(self, f: Frame) -> bytes:
        b, be = f.body, self.backend
        if f.kind is FrameKind.HELLO:
            if b.role != HarnessRole.HYPERVISOR:
                return build_error(
                    f.seq, HarnessStatus.WRONG_ROLE, payload_at(HELLO, "role"), "this IUT is a hypervisor", int(f.kind)
                )
            info = be.hello()
            self.greeted = True
            return build(
                FrameKind.HELLO_ACK,
                f.seq,
                {
                    "role": HarnessRole.HYPERVISOR,
                    "spec_major": info.spec_major,
                    "spec_minor": info.spec_minor,
                    "max_payload": HARNESS_MAX_PAYLOAD,
                    "name": self.name[:8].ljust(8, b"\0"),
                },
            )
        if f.kind is FrameKind.VM_CREATE:
            if (
                not 1 <= b.vcpus <= HARNESS_MAX_VCPUS
                or not 1 <= b.ram_mib <= HARNESS_MAX_RAM_MIB
                or b.device_count > HARNESS_MAX_DEVICES
            ):
                return build_error(
                    f.seq,
                    HarnessStatus.BAD_PAYLOAD,
                    payload_at(VM_CONFIG, "vcpus"),
                    VM_CONFIG_RULE,
                    int(f.kind),
                )
            if len(self.vms) >= HARNESS_MAX_VMS:
                return build_error(f.seq, HarnessStatus.LIMIT, KIND_AT, f"{HARNESS_MAX_VMS} VMs alive", int(f.kind))
            if sum(ram for _, ram in self.vms.values()) + b.ram_mib > HARNESS_MAX_SESSION_RAM_MIB:
                return build_error(
                    f.seq,
                    HarnessStatus.LIMIT,
                    payload_at(VM_CONFIG, "ram_mib"),
                    f"the session's VMs would hold more than {HARNESS_MAX_SESSION_RAM_MIB} MiB of guest RAM",
                    int(f.kind),
                )
            slots = [DeviceSlot(DeviceProfile(e.profile), DeviceRef(e.segment, e.bus, e.devfn)) for e in f.entries]
            knobs = VmKnobs(
                b.yield_after, b.features_required, b.features_withheld, b.remap_entries, b.max_claimed_devices
            )
            vm = be.create_vm(b.vcpus, b.ram_mib, slots, knobs)
            self.vms[vm] = (b.vcpus, b.ram_mib)
            return build(FrameKind.VM_CREATED, f.seq, {"vm": vm})
        if f.kind is FrameKind.VM_DESTROY:
            be.destroy_vm(b.vm)
            self.vms.pop(b.vm, None)
            self.queued.pop(b.vm, None)
            return build(FrameKind.OK, f.seq)
        if f.kind is FrameKind.MEM_WRITE:
            if not 1 <= b.size <= HARNESS_MAX_MEM_ACCESS:
                return build_error(
                    f.seq, HarnessStatus.BAD_LENGTH, payload_at(MEM_ACCESS, "size"), MEM_SIZE_RULE, int(f.kind)
                )
            be.mem_write(b.vm, b.gpa, f.data)
            return build(FrameKind.OK, f.seq)
        if f.kind is FrameKind.MEM_READ:
            if not 1 <= b.size <= HARNESS_MAX_MEM_ACCESS:
                return build_error(
                    f.seq, HarnessStatus.BAD_LENGTH, payload_at(MEM_ACCESS, "size"), MEM_SIZE_RULE, int(f.kind)
                )
            return build(FrameKind.MEM_DATA, f.seq, data=pad8(be.mem_read(b.vm, b.gpa, b.size)))
        if f.kind in (FrameKind.HYPERCALL, FrameKind.TRAP) and b.vm in self.vms and b.vcpu >= self.vms[b.vm][0]:
            fmt = HYPERCALL_REQ if f.kind is FrameKind.HYPERCALL else TRAP_REQ
            return build_error(
                f.seq,
                HarnessStatus.BAD_PAYLOAD,
                payload_at(fmt, "vcpu"),
                f"vCPU {b.vcpu} of a VM with {self.vms[b.vm][0]}",
                int(f.kind),
            )
        if f.kind is FrameKind.HYPERCALL:
            status, value = be.hypercall(b.vm, b.vcpu, b.function, (b.args[0], b.args[1], b.args[2], b.args[3]))
            return build(FrameKind.HYPERCALL_RESULT, f.seq, {"status": status, "value": value})
        if f.kind is FrameKind.DEVICE_WRITE:
            if b.size not in (1, 2, 4, 8):
                return build_error(
                    f.seq,
                    HarnessStatus.BAD_PAYLOAD,
                    payload_at(DEVICE_WRITE, "size"),
                    "size must be 1, 2, 4 or 8",
                    int(f.kind),
                )
            exited = be.device_write(b.vm, device_ref(b.device), DeviceSpace(b.space), b.offset, b.size, b.value)
            return build(FrameKind.DEVICE_RESULT, f.seq, {"exited": int(exited)})
        if f.kind is FrameKind.CONFIG_READ:
            for name, bad in (
                ("size", b.size < 4 or b.size % 4 or b.size > HARNESS_CONFIG_SPACE_SIZE),
                ("offset", b.offset % 4 or b.offset + b.size > HARNESS_CONFIG_SPACE_SIZE),
            ):
                if bad:
                    return build_error(
                        f.seq, HarnessStatus.BAD_PAYLOAD, payload_at(CONFIG_READ, name), CONFIG_READ_RULE, int(f.kind)
                    )
            data = be.config_read(b.vm, device_ref(b.device), b.offset, b.size)
            return build(FrameKind.CONFIG_DATA, f.seq, data=pad8(data))
        if f.kind is FrameKind.DEVICE_FIRE:
            r = be.fire(b.vm, device_ref(b.device), b.kind, b.index)
            return build(FrameKind.FIRE_RESULT, f.seq, {"outcome": r.outcome, "vcpu": r.vcpu, "vector": r.vector})
        if f.kind is FrameKind.TRAP:
            handled, regs = be.trap(
                b.vm, b.vcpu, TrapArch(b.arch), TrapInstruction(b.instruction), list(b.regs), b.privilege
            )
            return build(FrameKind.TRAP_RESULT, f.seq, {"handled": int(handled), "regs": regs})
        if f.kind is FrameKind.COLLECT:
            queue = self.queued.setdefault(b.vm, deque())
            queue.extend(be.collect(b.vm))
            irqs = [queue.popleft() for _ in range(min(len(queue), RECORDS_PER_FRAME))]
            if not queue:
                del self.queued[b.vm]
            return build(
                FrameKind.INTERRUPTS,
                f.seq,
                {"count": len(irqs), "remaining": len(queue)},
                entries=[{"vcpu": c, "vector": v} for c, v in irqs],
            )
        if f.kind is FrameKind.COUNTERS:
            c = be.counters(b.vm)
            return build(
                FrameKind.COUNTER_VALUES,
                f.seq,
                {
                    "exits": c.exits,
                    "hypercall_exits": c.hypercall_exits,
                    "msi_exits": c.msi_exits,
                    "msix_exits": c.msix_exits,
                    "delivered": c.delivered,
                    "blocked": c.blocked,
                    "last_call_max_reads": c.last_call_max_reads,
                },
            )
        if f.kind is FrameKind.LIFECYCLE:
            event = LifecycleEvent(b.event)
            be.lifecycle(b.vm, event, None if event is LifecycleEvent.VM_RESET else device_ref(b.device))
            return build(FrameKind.OK, f.seq)
        if f.kind is FrameKind.BYE:
            self.closed = True
            return build(FrameKind.OK, f.seq)
        if f.kind in REQUESTS_SERVED_BY[HarnessRole.GUEST]:
            return build_error(f.seq, HarnessStatus.WRONG_ROLE, KIND_AT, "this IUT is a hypervisor", int(f.kind))
        return build_error(
            f.seq, HarnessStatus.UNKNOWN_KIND, KIND_AT, f"{f.kind.name} is not a request to a hypervisor", int(f.kind)
        )
