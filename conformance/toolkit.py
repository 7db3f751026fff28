"""What a hypervisor-suite test uses to play the guest: blocks in guest memory, calls, decoding, a transcript.

Every call is recorded in the transcript (registers, block bytes in and out, status and value), which the
reports show next to a failure, so that an implementer sees exactly what the suite sent and got.  How a test
touches a device (configuration space, programming a slot, firing) is :mod:`.toolkit_devices`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..spec import harness_devices as hd
from ..spec.calls import BATCH_CALLS
from ..spec.codec import DecodeError
from ..spec.constants import (
    FEATURES_1_0,
    KIND_FEATURES,
    ActivateEntryFlag,
    AllocFlag,
    FunctionNumber,
    KindMask,
    MsgKind,
    Status,
)
from ..spec.fastcodec import FastFormat, fast, fast_of
from ..spec.formats import (
    BATCH_IN,
    BATCH_OUT,
    CLAIM_IN,
    DEVICE_ID,
    DEVICE_INFO,
    HV_INFO,
    NEGOTIATE_IN,
    NEGOTIATE_OUT,
)
from ..spec.harness_constants import DeviceProfile, TrapArch
from ..spec.iut import DeviceRef, DeviceSlot, HypervisorIUT, VmKnobs
from ..spec.layout import layout_of
from ..spec.platforms import DEFAULT_PLATFORM, arch_target
from ..spec.platforms import platform as platform_def
from ..spec.requirements import by_id
from ..spec.version import VERSION_MAJOR, VERSION_MINOR
from .toolkit_devices import DeviceAccess
from .transcribed import TranscribedIut

#: The guest page the suite puts parameter blocks in, and where in it.
SCRATCH = 0x10000
IN_GPA = SCRATCH
OUT_GPA = SCRATCH + 0x800
#: A page each for the input and output blocks of a page-full batch (spec "Batching and partial completion").
PAGE_IN_GPA = 0x20000
PAGE_OUT_GPA = 0x21000
#: What the suite fills an output block with before a call, to see what the IUT wrote.
SENTINEL = 0xA5

MLX5 = DeviceRef(0, 0, 0x08)
MSI_DEV = DeviceRef(0, 0, 0x10)
IDXD = DeviceRef(0, 0, 0x18)
ABSENT = DeviceRef(0, 0, 0xF8)
DEFAULT_DEVICES = (
    DeviceSlot(DeviceProfile.MLX5, MLX5),
    DeviceSlot(DeviceProfile.PLAIN_MSI, MSI_DEV),
    DeviceSlot(DeviceProfile.IDXD, IDXD),
)
PROFILE_SIZES = {  # (MSI vectors, MSI-X table size, IMS slots of the function, sub-devices)
    p: (d.msi_vectors, d.msix_table_size, d.ims_slots, d.subdevices) for p, d in hd.DEVICES.items()
}
IDXD_SUB_SLOTS = hd.DEVICES[DeviceProfile.IDXD].subdevice_slots
ALL_KINDS = int(KIND_FEATURES)


def architectures(platform: str) -> tuple[TrapArch, ...]:
    """The architectures whose calling conventions and discovery the suites test: the one of the platform the
    ICS declares (spec "Message formats": a platform implies its architecture). Every architecture-dependent test
    of both suites asks here; on another architecture it is unsupported.
    """
    return (TrapArch[platform_def(platform).arch.upper()],)


def size(fmt: Any) -> int:
    return layout_of(fmt).size


def encode(fmt: Any, value: Any) -> bytes:
    """Encode ``value`` as :func:`pvmsi.spec.codec.encode` does (same bytes, same errors), by the derived codec."""
    return fast_of(fmt).encode(value)


def decode(fmt: Any, data: bytes) -> Any:
    """Decode ``data`` as :func:`pvmsi.spec.codec.decode` does (same checks, same errors, an equal ``Container``),
    by the derived codec."""
    return fast_of(fmt).decode_container(data)


def status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        return f"undefined status {status}"


@dataclass
class Outcome:
    """What one call returned: registers and the output block as the suite read it back."""

    fn: int
    status: int
    value: int
    out: bytes = b""

    def decode_out(self, fmt: Any, offset: int = 0) -> Any:
        return decode(fmt, self.out[offset : offset + size(fmt)])


@dataclass
class Batch:
    """A batch call's outcome: the header and each result slot (None where the slot still holds the sentinel)."""

    outcome: Outcome
    header: Any
    results: list[Any]
    raw_results: list[bytes]

    @property
    def status(self) -> int:
        return self.outcome.status


class RequirementFailure(AssertionError):
    """A check failed: names the requirement, quotes it, and shows expected vs actual."""


def check(cond: bool, rid: str, expected: str, actual: str) -> None:
    """Fail the test against requirement ``rid`` unless ``cond``."""
    if not cond:
        req = by_id(rid)
        raise RequirementFailure(
            f"{rid} ({req.level.value}, {req.role.value}): {req.text}\n  expected: {expected}\n  actual:   {actual}"
        )


def vector_shift(platform: str) -> int:
    """What ``platform``'s vectors are offset by from the x86 vectors (32..255) the tests are written in: arm64
    LPIs start at 8192 (0x40 is sent as 8224); x86 and the riscv64 identities (1..N; the reference's N is 255, a
    real IMSIC's may be 63) take them as they are."""
    target = arch_target(platform)
    return target.vector_min - 32 if target.vector_min > 32 else 0


@dataclass
class Session(DeviceAccess):
    """One test's view of the IUT: a VM (created on first use), calls and the transcript."""

    iut: HypervisorIUT
    transcript: list[str] = field(default_factory=list)
    vms: list[int] = field(default_factory=list)
    _vm: int | None = None
    vcpus: int = 4
    #: The platform the ICS declares (spec "Message formats"): the vector range tests use follows its arch.
    platform: str = DEFAULT_PLATFORM

    def __post_init__(self) -> None:
        # Tests reach the IUT through ``iut``, which writes every request into the transcript; the helpers below
        # use ``wire`` and write lines of their own (conformance guide, "Reports": every call is kept).
        self.wire: HypervisorIUT = self.iut
        self.iut = TranscribedIut(self.wire, self.log)

    # -- vectors -------------------------------------------------------------------------------------------

    @property
    def vector_shift(self) -> int:
        """What the platform's vectors are offset by from the x86 vectors the tests are written in
        (:func:`vector_shift`)."""
        return vector_shift(self.platform)

    def wire_vector(self, vector: int) -> int:
        """The platform's vector for the x86-style ``vector`` a test names (HV-ALLOC-006)."""
        return vector + self.vector_shift

    def test_vector(self, vector: int) -> int:
        """The x86-style vector of the platform's ``vector`` (what a delivery is compared with)."""
        return vector - self.vector_shift

    def collect(self, vm: int) -> list[tuple[int, int]]:
        """The interrupts injected into ``vm`` since the last collect, vectors as the tests name them."""
        return [(vcpu, self.test_vector(vector)) for vcpu, vector in self.iut.collect(vm)]

    # -- VMs -----------------------------------------------------------------------------------------------

    @property
    def vm(self) -> int:
        if self._vm is None:
            self._vm = self.new_vm()
        return self._vm

    def new_vm(
        self, devices: Sequence[DeviceSlot] = DEFAULT_DEVICES, vcpus: int | None = None, knobs: VmKnobs | None = None
    ) -> int:
        vm = self.wire.create_vm(vcpus or self.vcpus, 16, list(devices), knobs)
        self.vms.append(vm)
        self.log(f"VM_CREATE -> vm {vm} ({len(devices)} devices)")
        return vm

    def close(self) -> None:
        for vm in self.vms:
            try:
                self.wire.destroy_vm(vm)
            except Exception as e:  # a destroy that fails must not hide the test's verdict
                self.log(f"VM_DESTROY {vm} failed: {e}")
        self.vms.clear()

    def log(self, line: str) -> None:
        self.transcript.append(line)

    def use(self, vm: int) -> None:
        """Make ``vm`` the default VM of later calls."""
        self._vm = vm

    # -- raw calls -----------------------------------------------------------------------------------------------

    def call(
        self,
        fn: int,
        block: bytes | None = None,
        out_size: int = 0,
        *,
        vm: int | None = None,
        vcpu: int = 0,
        in_gpa: int = IN_GPA,
        out_gpa: int = OUT_GPA,
        args: tuple[int, int, int, int] | None = None,
        fill: bool = True,
    ) -> Outcome:
        """Issue ``fn`` with ``block`` at ``in_gpa`` and an output block of ``out_size`` at ``out_gpa``."""
        vm = self.vm if vm is None else vm
        if block is not None:
            self.wire.mem_write(vm, in_gpa, block)
        if out_size and fill:
            self.wire.mem_write(vm, out_gpa, bytes([SENTINEL]) * out_size)
        if args is None:
            args = (in_gpa if block is not None else 0, out_gpa if out_size else 0, 0, 0)
        together = getattr(self.wire, "hypercall_and_read", None)
        if together is not None and out_size:  # a remote IUT: the call and the read of its output in one exchange
            status, value, out = together(vm, vcpu, fn, args, out_gpa, out_size)
        else:
            status, value = self.wire.hypercall(vm, vcpu, fn, args)
            out = self.wire.mem_read(vm, out_gpa, out_size) if out_size else b""
        name = FunctionNumber(fn).name if fn in FunctionNumber._value2member_map_ else f"fn {fn:#x}"
        self.log(
            f"vm {vm} vcpu {vcpu} {name} args=({', '.join(hex(a) for a in args)})"
            + (f" in={block.hex()}" if block else "")
            + f" -> {status_name(status)} value={value:#x}"
            + (f" out={out.hex()}" if out else "")
        )
        return Outcome(fn, status, value, out)

    # -- typed calls ------------------------------------------------------------------------------------------------

    def version(self, **kw: Any) -> Outcome:
        return self.call(FunctionNumber.VERSION, **kw)

    def info(self, **kw: Any) -> Any:
        out = self.call(FunctionNumber.GET_INFO, None, size(HV_INFO), **kw)
        check(out.status == Status.SUCCESS, "HV-DISC-004", "GET_INFO -> SUCCESS", status_name(out.status))
        return out.decode_out(HV_INFO)

    def negotiate(
        self, features: int | None = None, *, major: int = VERSION_MAJOR, minor: int = VERSION_MINOR, **kw: Any
    ) -> Outcome:
        if features is None:  # what a conforming guest accepts: the offered bits it knows (GUEST-VER-001)
            features = self.info(vm=kw.get("vm")).features_offered & int(FEATURES_1_0)
        req = encode(NEGOTIATE_IN, {"version_major": major, "version_minor": minor, "features": features})
        return self.call(FunctionNumber.NEGOTIATE, req, size(NEGOTIATE_OUT), **kw)

    def negotiated(self, features: int | None = None, **kw: Any) -> int:
        """Negotiate (every offered feature this version defines, by default) and insist on success."""
        out = self.negotiate(features, **kw)
        check(out.status == Status.SUCCESS, "HV-NEG-005", "NEGOTIATE -> SUCCESS", status_name(out.status))
        return out.value

    def query(self, dev: DeviceRef, **kw: Any) -> Outcome:
        return self.call(FunctionNumber.DEVICE_QUERY, encode(DEVICE_ID, dev.wire()), size(DEVICE_INFO), **kw)

    def device_info(self, dev: DeviceRef, **kw: Any) -> Any:
        out = self.query(dev, **kw)
        check(out.status == Status.SUCCESS, "HV-DEV-004", "DEVICE_QUERY -> SUCCESS", status_name(out.status))
        return out.decode_out(DEVICE_INFO)

    def claim(self, dev: DeviceRef, kinds: int, **kw: Any) -> Outcome:
        return self.call(FunctionNumber.DEVICE_CLAIM, encode(CLAIM_IN, {"device": dev.wire(), "kinds": kinds}), **kw)

    def claimed(self, dev: DeviceRef, kinds: int, **kw: Any) -> None:
        out = self.claim(dev, kinds, **kw)
        check(out.status == Status.SUCCESS, "HV-DEV-009", "DEVICE_CLAIM -> SUCCESS", status_name(out.status))

    def release(self, dev: DeviceRef, **kw: Any) -> Outcome:
        return self.call(FunctionNumber.DEVICE_RELEASE, encode(DEVICE_ID, dev.wire()), **kw)

    def reset(self, **kw: Any) -> Outcome:
        return self.call(FunctionNumber.RESET, **kw)

    def batch(
        self,
        fn: FunctionNumber,
        dev: DeviceRef,
        entries: Sequence[dict[str, Any] | bytes],
        *,
        start: int = 0,
        count: int | None = None,
        header: dict[str, Any] | None = None,
        raw_vectors: bool = False,
        **kw: Any,
    ) -> Batch:
        """A batch call; entries may be raw bytes (to send malformed ones).  A dict entry's ``vector`` is an
        x86-style vector moved into the platform's range (:meth:`wire_vector`) unless ``raw_vectors``."""
        call = BATCH_CALLS[fn]
        if self.vector_shift and not raw_vectors:
            entries = [
                {**e, "vector": self.wire_vector(e["vector"])} if isinstance(e, dict) and "vector" in e else e
                for e in entries
            ]
        defaults = _ENTRY_DEFAULTS.get(fn)
        if defaults:  # the one-step and block-wide forms unless the test says otherwise
            entries = [{**defaults, **e} if isinstance(e, dict) else e for e in entries]
        entry, result = fast(call.input_entry or ""), fast(call.output_entry or "")
        n = len(entries) if count is None else count
        hdr = {"device": dev.wire(), "count": n, "start": start, **(header or {})}
        body = b"".join(e if isinstance(e, bytes) else entry.encode(e) for e in entries)
        out = self.call(fn, _BATCH_IN.encode(hdr) + body, _BATCH_OUT.size + n * result.size, **kw)
        raw = [
            out.out[i : i + result.size] for i in range(_BATCH_OUT.size, _BATCH_OUT.size + n * result.size, result.size)
        ]
        return Batch(out, _decoded(_BATCH_OUT, out.out[: _BATCH_OUT.size]), [_decoded(result, r) for r in raw], raw)

    def batch_limit(self, fn: FunctionNumber, **kw: Any) -> int:
        """The most entries one batch of ``fn`` may carry: hv_info.max_batch or what a page holds, the smaller
        (HV-BATCH-001). Blocks of more than 64 entries need a page each (``PAGE_IN_GPA``, ``PAGE_OUT_GPA``)."""
        return min(int(self.info(**kw).max_batch), BATCH_CALLS[fn].max_batch or 0)

    def alloc(self, dev: DeviceRef, entries: Sequence[dict[str, Any] | bytes], **kw: Any) -> Batch:
        return self.batch(FunctionNumber.MSG_ALLOC, dev, entries, **kw)

    def retarget(self, dev: DeviceRef, entries: Sequence[dict[str, Any] | bytes], **kw: Any) -> Batch:
        return self.batch(FunctionNumber.MSG_ACTIVATE, dev, entries, **kw)

    def activate(self, dev: DeviceRef, entries: Sequence[dict[str, Any] | bytes], **kw: Any) -> Batch:
        """MSG_ACTIVATE (what :meth:`retarget` issues too)."""
        return self.batch(FunctionNumber.MSG_ACTIVATE, dev, entries, **kw)

    def reserve(self, dev: DeviceRef, entries: Sequence[dict[str, Any] | bytes], **kw: Any) -> Batch:
        """MSG_ALLOC without PVMSI_ALLOC_ACTIVATE: dict entries name kind, vector_count and slot only."""
        fields = {"flags": 0, "vcpu": 0, "vector": 0, "alloc_flags": 0, "hint_vcpu": 0}
        kw.setdefault("raw_vectors", True)  # no vector to move into the platform's range
        return self.batch(
            FunctionNumber.MSG_ALLOC, dev, [{**fields, **e} if isinstance(e, dict) else e for e in entries], **kw
        )

    def deactivate(self, dev: DeviceRef, entries: Sequence[dict[str, Any] | bytes], **kw: Any) -> Batch:
        return self.batch(FunctionNumber.MSG_DEACTIVATE, dev, entries, **kw)

    def free(self, dev: DeviceRef, handles: Sequence[int], **kw: Any) -> Batch:
        return self.batch(FunctionNumber.MSG_FREE, dev, [{"handle": h} for h in handles], **kw)

    # -- scenarios used by many tests ------------------------------------------------------------------------------

    def ready(self, dev: DeviceRef = MLX5, kinds: int = int(KindMask.MSIX), **kw: Any) -> None:
        """Negotiate every offered feature and claim ``kinds`` of ``dev``."""
        self.negotiated(**kw)
        self.claimed(dev, kinds, **kw)

    def allocated(
        self,
        dev: DeviceRef,
        kind: MsgKind,
        slots: Sequence[int],
        *,
        vcpu: int = 1,
        vector: int = 0x40,
        count: int = 1,
        **kw: Any,
    ) -> list[Any]:
        """Allocate one message per slot (vector, vector+1, ...) and insist on success."""
        entries = [
            {"kind": kind, "flags": 0, "vector_count": count, "slot": s, "vcpu": vcpu, "vector": vector + i * count}
            for i, s in enumerate(slots)
        ]
        b = self.alloc(dev, entries, **kw)
        check(b.status == Status.SUCCESS, "HV-ALLOC-007", "MSG_ALLOC -> SUCCESS", status_name(b.status))
        return b.results


_BATCH_IN, _BATCH_OUT = fast_of(BATCH_IN), fast_of(BATCH_OUT)

#: Fields a test's entry dict may leave out: MSG_ALLOC one step (PVMSI_ALLOC_ACTIVATE), no hint; MSG_ACTIVATE and
#: MSG_DEACTIVATE block-wide (PVMSI_ACTENT_BLOCK, index 0).
_ENTRY_DEFAULTS: dict[int, dict[str, int]] = {
    FunctionNumber.MSG_ALLOC: {"alloc_flags": int(AllocFlag.ACTIVATE), "hint_vcpu": 0},
    FunctionNumber.MSG_ACTIVATE: {"entry_flags": int(ActivateEntryFlag.BLOCK), "index": 0},
    FunctionNumber.MSG_DEACTIVATE: {"entry_flags": int(ActivateEntryFlag.BLOCK), "index": 0},
}


def _decoded(fmt: FastFormat, raw: bytes) -> Any:
    """A result slot or header as the IUT left it: None if it still holds the sentinel, the raw bytes if it does
    not decode, else its record."""
    if raw == bytes([SENTINEL]) * fmt.size:
        return None
    try:
        return fmt.decode_record(raw)
    except DecodeError:
        return raw


def alloc_entry(
    kind: MsgKind, slot: int, vcpu: int = 1, vector: int = 0x40, count: int = 1, flags: int = 0
) -> dict[str, Any]:
    """A one-step allocate entry (PVMSI_ALLOC_ACTIVATE): reserve and target at once."""
    return {
        "kind": kind,
        "flags": flags,
        "vector_count": count,
        "slot": slot,
        "vcpu": vcpu,
        "vector": vector,
        "alloc_flags": int(AllocFlag.ACTIVATE),
        "hint_vcpu": 0,
    }
