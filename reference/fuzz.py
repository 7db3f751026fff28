"""Fuzzing a hypervisor built on the reference system: every call checked against an independent model.

    pvmsi fuzz --inputs 1000000 --seed 1
    pvmsi fuzz --check-faults --inputs 100000 --seed 1 --json caught.json

Each host has two to four VMs sharing one interrupt-remapping table, with NICs, multi-vector MSI devices and
IDXD-like accelerators (sub-devices of the second accelerator have other host PASIDs than guest ids). Each VM
negotiates, claims and allocates through checked calls when it starts, so most inputs meet live messages. An
input is one hypercall from a random vCPU of a random VM (one in ten through the architecture's trap, with its
register encoding): mostly a message call on a claimed device whose entries look valid (free slots, vCPUs and
vectors in range, handles the VM holds), mixed with attacks (another VM's handle, a handle held for another
device, a guessed or malformed handle, a slot that holds a message, a resumed batch whose failing entry changed)
and mutations (bit flips, counts and starts, reserved fields, registers, misaligned, page-crossing, overlapping
and non-RAM blocks). Between calls: pairs written into devices and fired, forged and replayed writes, FLR, VM
reset, hot-unplug, migration, VM destruction, and the discovery traps (CPUID, SBI probe).

The oracle is :class:`~.fuzz_model.Model`: the status and value of every call, its output block, and the VM's
state after it, from the spec. Besides it, after every input: no exception escaped; each input byte was read at
most once and nothing was written outside the output block (nothing on a failed non-batch call but NEGOTIATE's);
the core's books equal the model's (state, features, claims, handles and what they hold); the remapping table
holds exactly the live messages (:func:`~.fuzz_checks.check_invariants`). A pair the guest was handed delivers
to the vCPU and vector it asked for, and nowhere when another requester writes it.

The host is rebuilt every ``epoch`` inputs with a random configuration (batch limit, yield point, quotas, claim
limit, table size, offered and required features), so ``--seed S --inputs N`` replays the first N inputs.
"""

from __future__ import annotations

import random
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..spec.callconv import CONVENTIONS, RISCV_EXTENSION_ID, SbiError, sbiret_of
from ..spec.calls import CALLS_BY_FN
from ..spec.constants import FEATURES_1_0, Feature, FunctionNumber, Limit, MsgKind, Status
from ..spec.fastcodec import fast
from ..spec.formats import BATCH_OUT
from ..spec.layout import layout_of
from .fuzz_checks import check_invariants
from .fuzz_events import HostEvents, TrapHook
from .fuzz_gen import Generator, device_id
from .fuzz_model import Model
from .fuzz_state import Dev, VmModel
from .hypervisor.arch import to_signed
from .hypervisor.config import HypervisorConfig
from .platform.profiles import IDXD_LIKE, MLX5_LIKE, MSI_MULTI, DeviceProfile
from .platform.requester import Bdf
from .system import ReferenceSystem, SystemVm

__all__ = ["FuzzFailure", "FuzzReport", "Fuzzer", "SystemFactory", "TrapHook", "check_invariants", "chunks", "fuzz"]

MASK64 = (1 << 64) - 1
STATUS_NAMES = {int(s): s.name for s in Status}
PAGE = int(Limit.PAGE_SIZE)
SCRATCH = 0x20000
OUT = SCRATCH + 2048
#: The VMs of a host: (profile, guest BDF) each; the first two share an mlx5-like NIC's guest BDF.
VM_LAYOUTS: tuple[tuple[tuple[DeviceProfile, Bdf], ...], ...] = (
    ((MLX5_LIKE, Bdf(0, 0, 0x08)), (MSI_MULTI, Bdf(0, 0, 0x10)), (IDXD_LIKE, Bdf(0, 0, 0x18))),
    ((MLX5_LIKE, Bdf(0, 0, 0x08)), (IDXD_LIKE, Bdf(0, 0, 0x18)), (IDXD_LIKE, Bdf(0, 0, 0x20))),
    ((MSI_MULTI, Bdf(0, 0, 0x10)), (MLX5_LIKE, Bdf(0, 1, 0x00))),
    ((IDXD_LIKE, Bdf(0, 0, 0x18)),),
)
_OUT_SIZES = {
    fn: fast(c.output).size + (64 * fast(c.output_entry).size if c.output_entry else 0)
    for fn, c in CALLS_BY_FN.items()
    if c.output is not None
}
#: Builds the host under test from a configuration and a table size (None: the default table).
SystemFactory = Callable[[HypervisorConfig, int | None], ReferenceSystem]


def execute_trap(
    system: ReferenceSystem,
    vm: SystemVm,
    vcpu: int,
    arch: str,
    instruction: str,
    regs: dict[str, int],
    privilege: int = 0,
) -> dict[str, int] | None:
    return system.execute_trap(vm, vcpu, arch, instruction, regs, privilege)


def reference_system(config: HypervisorConfig, remap_entries: int | None) -> ReferenceSystem:
    return ReferenceSystem(config, remap_entries=remap_entries)


@dataclass
class FuzzFailure:
    """One input that raised or broke a check."""

    index: int
    what: str
    detail: str


@dataclass
class FuzzReport:
    """The outcome of a fuzz run."""

    seed: int
    inputs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    failures: list[FuzzFailure] = field(default_factory=list)
    failure_count: int = 0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure_count == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "inputs": self.inputs,
            "ok": self.ok,
            "failures": self.failure_count,
            "first_failures": [f.__dict__ for f in self.failures],
            "statuses": dict(sorted(self.statuses.items())),
            "events": dict(sorted(self.events.items())),
            "elapsed_s": round(self.elapsed_s, 3),
            "inputs_per_s": round(self.inputs / self.elapsed_s, 1) if self.elapsed_s else None,
        }


def function_number(arch: str, regs: dict[str, int]) -> int | None:
    """The pvmsi function a trap's registers name, by the spec's calling conventions; None: not pvmsi."""
    cc = next(c for c in CONVENTIONS if c.arch == arch)
    fid = regs[cc.function_id_register.replace("w", "x")]
    if arch == "riscv64":
        return fid if regs["a7"] == RISCV_EXTENSION_ID else None
    if arch == "arm64":
        fid &= 0xFFFFFFFF
    return fid & 0xFF if fid & ~0xFF == cc.call_base else None


class Fuzzer(HostEvents):
    """Generates inputs, runs them on the host that ``system`` builds and checks them; :meth:`run` drives it."""

    def __init__(
        self,
        seed: int = 0,
        *,
        epoch: int = 1000,
        keep_failures: int = 20,
        system: SystemFactory = reference_system,
        trap: TrapHook = execute_trap,
        stop_at_first: bool = False,
    ) -> None:
        self.seed, self.epoch, self.keep_failures = seed, epoch, keep_failures
        self.make_system, self.trap, self.stop_at_first = system, trap, stop_at_first
        self.rng = random.Random(seed)
        self.report = FuzzReport(seed)
        self.events = self.report.events
        self.system: ReferenceSystem
        self.model: Model
        self.vms: list[SystemVm] = []
        self.destroyed: set[int] = set()
        self.gen = Generator(self.rng)
        self.index = 0
        self._forget_devices: dict[int, Callable[[], None]] = {}
        self.written = {}

    # -- the host ------------------------------------------------------------------------------------------
    def new_epoch(self) -> None:
        rng = self.rng
        offered, required = int(FEATURES_1_0), 0
        if rng.random() < 0.25:
            offered = rng.randrange(1, 1 << 5) | int(rng.choice((Feature.MSI, Feature.MSIX, Feature.IMS)))
        if rng.random() < 0.2:
            required = offered & rng.randrange(0, 1 << 5)
        config = HypervisorConfig(
            features_offered=offered,
            features_required=required,
            max_batch=rng.choice((64, 64, 16, 8, 1, rng.randrange(1, 65))),
            max_claimed_devices=rng.choice((16, 16, 16, 3, 2, 1)),
            max_messages_per_vm=rng.choice((8192, 8192, 8192, 96, 40)),
            max_messages_per_device=rng.choice((4096, 4096, 4096, 48, 12)),
            yield_after=rng.choice((None, None, None, None, 1, 3)),
            handle_seed=rng.getrandbits(32),
        )
        self.system = self.make_system(config, rng.choice((None, None, None, 1024, 256)))  # shares of 128, 32
        table = self.system.platform.table
        self.model = Model(table.can_alloc, lambda vm_id: None if (s := table.share(vm_id)) is None else s.limit)
        self.destroyed = set()
        self.written = {}
        self.vms = []
        for layout in VM_LAYOUTS[: rng.choice((2, 3, 3, 4))]:
            vm = self.system.create_vm(rng.choice((1, 2, 4, 8)), 16 << 20, layout)
            self.vms.append(vm)
            self.model.vms[vm.vm_id] = VmModel(
                vm.vm_id, vm.vcpu_count, config, self._devices_of(vm), self._emulated_of(vm)
            )
        for vm in self.vms:
            if rng.random() < 0.95:
                self.setup(vm)

    def _devices_of(self, vm: SystemVm) -> Callable[[], dict[Any, Dev]]:
        """The devices the guest sees (spec "Device control"), from the platform's assignment: a function has
        the IMS slots no sub-device owns; a sub-device has IMS only, its own partition, and needs the vIOMMU."""
        platform = self.system.platform
        cache: list[dict[Any, Dev]] = []
        self._forget_devices[vm.vm_id] = cache.clear  # the assignment changes on hot-unplug only

        def devices() -> dict[Any, Dev]:
            if cache:
                return cache[0]
            out: dict[Any, Dev] = {}
            for dev in platform.devices_of(vm.vm):
                g = dev.guest
                if g is None:
                    continue
                subs = dev.subdevices
                own_ims = dev.ims_slots - sum(s.slot_count for s in subs)
                out[g.segment, g.bus, g.devfn, None] = Dev(
                    dev.msi_max_vectors, dev.msix_table_size, own_ims, dev.isolated, False, bool(subs)
                )
                for i, s in enumerate(subs, 1):
                    out[g.segment, g.bus, g.devfn, i] = Dev(0, 0, s.slot_count, dev.isolated, dev.needs_viommu, True)
            cache.append(out)
            return out

        return devices

    def _emulated_of(self, vm: SystemVm) -> Callable[[Any, int], bool]:
        legacy = self.system.platform.legacy

        def emulated(key: Any, kind: int) -> bool:
            pci = vm.pci(*key[:3])
            return key[3] is None and pci is not None and legacy.enabled_through_emulation(pci, MsgKind(kind))

        return emulated

    def setup(self, vm: SystemVm) -> None:
        """Negotiate, then :meth:`populate`, through checked calls, as a guest's driver does at boot."""
        rng, m = self.rng, self.model.vms[vm.vm_id]
        cfg = m.config
        features = cfg.features_offered & rng.choice((int(FEATURES_1_0), int(FEATURES_1_0), rng.getrandbits(5)))
        features |= cfg.features_required | (cfg.features_offered & 0b111 if not features & 0b111 else 0)
        self._write(vm, SCRATCH, fast("negotiate_in").struct.pack(1, 0, 0, features))
        self.call(vm, FunctionNumber.NEGOTIATE, (SCRATCH, OUT, 0, 0))
        self.populate(vm)

    def populate(self, vm: SystemVm) -> None:
        """Claim devices for the kinds in force and allocate messages on them, so most inputs meet live ones."""
        rng, m = self.rng, self.model.vms[vm.vm_id]
        if m.state.name != "NEGOTIATED":
            return
        allowed = m.features & 0b111  # Feature.MSI/MSIX/IMS are the KindMask bits
        devices = m.devices()
        keys = [k for k, d in devices.items() if d.kinds & allowed and (k[3] is None or m.features & Feature.SUBDEVICE)]
        rng.shuffle(keys)
        for key in keys[: rng.randrange(2, 7)]:
            if key in m.claims or len(m.claims) >= m.config.max_claimed_devices:
                continue
            kinds = devices[key].kinds & allowed
            if rng.random() < 0.3:  # a subset: what is not claimed stays emulated, and is not the VM's to allocate
                kinds = kinds & rng.randrange(1, 16) or kinds
            self._write(vm, SCRATCH, fast("claim_in").struct.pack(*device_id(key), kinds, 0))
            self.call(vm, FunctionNumber.DEVICE_CLAIM, (SCRATCH, 0, 0, 0))
        for _ in range(rng.randrange(1, 5)):
            if m.claims:
                self.message_call(vm, FunctionNumber.MSG_ALLOC, valid=True)

    def _write(self, vm: SystemVm, gpa: int, data: bytes) -> None:
        mem = vm.vm.memory
        if data and mem.is_ram(gpa, len(data)):
            mem.write(gpa, data)

    def _read(self, vm: SystemVm) -> Callable[[int, int], bytes | None]:
        mem = vm.vm.memory

        def read(gpa: int, size: int) -> bytes | None:
            return mem.read(gpa, size) if gpa >= 0 and mem.is_ram(gpa, size) else None

        return read

    # -- one checked call ----------------------------------------------------------------------------------
    def call(self, vm: SystemVm, fn: int, args: tuple[int, int, int, int], *, trap: bool = False) -> tuple[int, int]:
        """Issue call ``fn`` (directly, or through a random architecture's trap), check it against the model,
        the memory rules and the books; its status and value."""
        rng, mem, m = self.rng, vm.vm.memory, self.model.vms[vm.vm_id]
        read = self._read(vm)
        out_size = _OUT_SIZES.get(fn, 0)
        if (
            out_size
            and rng.random() < 0.9
            and read(args[1], 16) is not None
            and not args[0] <= args[1] < args[0] + 2048
        ):
            self._write(vm, args[1], rng.randbytes(min(out_size, PAGE - args[1] % PAGE)))  # stale bytes never pass
        plan = self.model.plan(m, fn, args, read)
        vcpu = rng.randrange(vm.vcpu_count)
        with mem.track() as tracker:
            if trap:
                cc = rng.choice(CONVENTIONS)
                regs = {r: rng.getrandbits(64) for r in ("rax", "rbx", "rcx", "rdx", "rsi", "x0", "x1", "x2", "x3")}
                regs.update({"x4": 0, "a0": 0, "a1": 0, "a2": 0, "a3": 0, "a6": 0, "a7": 0})
                regs[cc.function_id_register.replace("w", "x")] = cc.function_id(fn)
                if cc.extra_id_register:
                    regs[cc.extra_id_register] = RISCV_EXTENSION_ID
                regs.update(zip(cc.argument_registers, args, strict=True))
                if function_number(cc.arch, regs) != fn:
                    raise AssertionError(f"{cc.arch}: the spec's encoding of {fn:#x} does not decode")
                insn = rng.choice(cc.instruction).split()[0]
                after = self.trap(self.system, vm, vcpu, cc.arch, insn, regs, 0)
                if after is None:
                    self._fail("trap", f"{cc.arch} {insn}: pvmsi call {fn:#x} not recognised (HV-CALL-006)")
                    return -1, 0
                status, value = to_signed(after[cc.status_register]), after[cc.value_register] & MASK64
                if cc.arch == "riscv64":
                    status, value = self._from_sbiret(plan, status, value, read, args[1])
            else:
                result = self.system.core.hypercall(vm, vcpu, fn, args)
                status, value = result.status, result.value
        self.report.statuses[STATUS_NAMES.get(status, str(status))] += 1
        for problem in self.model.settle(plan, status, value, read, args[1]):
            self._fail("model", problem)
        self._check_access(fn, args, status, tracker)
        self._compare(vm)
        return status, value

    def _from_sbiret(
        self, plan: Any, error: int, value: int, read: Callable[[int, int], bytes | None], out_gpa: int
    ) -> tuple[int, int]:
        """riscv64's sbiret back to pvmsi's (status, value) (HV-ABI-004): SBI_SUCCESS is SUCCESS, or INCOMPLETE
        for a batch stopped before its end; on failure a1 holds the status, a failed batch's next_index is in
        batch_out, and a0 must be the SBI error the status maps to."""
        if error == SbiError.SUCCESS:
            if plan.batch is not None and value < plan.batch[0].count:
                return Status.INCOMPLETE, value
            return Status.SUCCESS, value
        status = to_signed(value)
        if sbiret_of(status, 0)[0] != error:
            self._fail("sbiret", f"sbiret.error {error} for pvmsi status {status} (HV-ABI-004)")
        if plan.batch is None:
            return status, 0
        f = layout_of(BATCH_OUT).field("next_index")
        raw = read(out_gpa + f.offset, f.size)
        return status, (int.from_bytes(raw, "little") if raw else 0)

    def _check_access(self, fn: int, args: tuple[int, ...], status: int, tracker: Any) -> None:
        if tracker.reads and tracker.max_reads > 1:
            self._fail("read-once", f"fn {fn:#x}: bytes read twice {tracker.reread()[:4]}")
        if not tracker.writes:
            return
        call = CALLS_BY_FN.get(fn)
        outside = [g for g in tracker.writes if not args[1] <= g < args[1] + _OUT_SIZES.get(fn, 0)]
        if outside:
            self._fail("write-outside", f"fn {fn:#x} wrote {len(outside)} bytes outside its output block")
        if status < 0 and call is not None and call.output_entry is None and call.fn is not FunctionNumber.NEGOTIATE:
            self._fail("write-on-failure", f"{call.name} failed with {status} but wrote its output block")

    def _compare(self, vm: SystemVm) -> None:
        """The core's books of ``vm`` equal the model's (spec: the state each call leaves)."""
        m = self.model.vms.get(vm.vm_id)
        st = self.system.core.vm_states().get(vm.vm_id)
        if m is None:
            return
        want = (m.state.name, m.features, {k: c.kinds for k, c in m.claims.items()}, m.vectors)
        got = (
            ("OPEN", 0, {}, 0)
            if st is None
            else (st.state.name, st.features, {k: c.kinds for k, c in st.claims.items()}, st.vectors)
        )
        if got != want:
            self._fail("state", f"VM {vm.vm_id}: state/features/claims/vectors {got}, the spec requires {want}")
            self._resync(vm)
            return
        held = {} if st is None else st.messages
        if held.keys() != m.messages.keys():
            self._fail("state", f"VM {vm.vm_id}: handles {sorted(held)[:4]}..., model {sorted(m.messages)[:4]}...")
            self._resync(vm)
            return
        for h, x in m.messages.items():
            c = held[h]
            if (c.device, int(c.kind), c.slot, c.count, c.vcpu, c.vector, c.posted, c.address, c.data) != (
                x.device, x.kind, x.slot, x.count, x.vcpu, x.vector, x.posted, x.address, x.data
            ):  # fmt: skip
                self._fail("state", f"VM {vm.vm_id}: handle {h:#x} holds {c}, the guest was handed {x}")
                self._resync(vm)
                return

    def _resync(self, vm: SystemVm) -> None:
        """After a reported divergence, rebuild the host so that one fault is reported once, not forever."""
        self.report.events["resync"] += 1
        self.new_epoch()

    def _fail(self, what: str, detail: str) -> None:
        self.report.failure_count += 1
        if len(self.report.failures) < self.keep_failures:
            self.report.failures.append(FuzzFailure(self.index, what, detail))

    # -- inputs --------------------------------------------------------------------------------------------
    def message_call(self, vm: SystemVm, fn: int, *, valid: bool = False) -> int:
        """A batch of ``fn`` for a claimed device of ``vm``, its entries built from the model's state."""
        m = self.model.vms[vm.vm_id]
        others = [x for x in self.model.vms.values() if x is not m]
        block, in_gpa, out_gpa, regs = self.gen.batch(m, others, fn, valid)
        self._write(vm, in_gpa, block)
        status, value = self.call(vm, fn, (in_gpa, out_gpa, *regs), trap=not valid and self.rng.random() < 0.1)
        self.gen.last = (vm.vm_id, fn, block, value)
        return status

    def step(self) -> None:
        rng = self.rng
        live = [vm for vm in self.vms if vm.vm_id not in self.destroyed]
        if not live:
            self.new_epoch()
            live = self.vms
        vm = rng.choice(live)
        m = self.model.vms[vm.vm_id]
        self.report.events["input_with_live_messages" if m.messages else "input_without_live_messages"] += 1
        r = rng.random()
        if not m.messages and m.state.name == "NEGOTIATED" and rng.random() < 0.3:
            self.populate(vm)
        elif r < 0.12:
            self.event(vm)
        elif r < 0.75 and m.claims:
            batch = rng.choice(
                (FunctionNumber.MSG_ALLOC,) * 3
                + (FunctionNumber.MSG_ACTIVATE,) * 2
                + (FunctionNumber.MSG_FREE, FunctionNumber.MSG_DEACTIVATE)
            )
            self.message_call(vm, batch, valid=rng.random() < 0.3)
        else:
            fn, block, args = self.gen.other_call(self.model.vms[vm.vm_id], self.model.vms.values())
            self._write(vm, args[0] if args[0] else SCRATCH, block)
            status, _ = self.call(vm, fn, args, trap=fn < 0x100 and rng.random() < 0.1)
            if fn == FunctionNumber.RESET and status == Status.SUCCESS and rng.random() < 0.7:
                self.setup(vm)
        if self.report.failure_count == 0 or not self.stop_at_first:
            for problem in check_invariants(self.system, self.destroyed):
                self._fail("invariant", problem)
                self._resync(vm)
                break

    # -- driving -------------------------------------------------------------------------------------------
    def run(self, inputs: int, progress: Callable[[int], None] | None = None) -> FuzzReport:
        start = time.perf_counter()
        for index in range(inputs):
            self.index = index
            try:
                if index % self.epoch == 0:
                    self.new_epoch()
                self.step()
            except Exception as e:  # an escaped exception is a failure the fuzzer hunts
                self._fail("exception", "".join(traceback.format_exception(e))[-2000:])
                if self.stop_at_first:
                    break
                self.new_epoch()
            self.report.inputs = index + 1
            if progress is not None and (index + 1) % 1000 == 0:
                progress(index + 1)
            if self.stop_at_first and self.report.failure_count:
                break
        self.report.elapsed_s = time.perf_counter() - start
        return self.report


def fuzz(inputs: int, seed: int = 0, *, progress: Callable[[int], None] | None = None) -> FuzzReport:
    """Run ``inputs`` fuzz inputs from ``seed`` against the reference; the report says whether any failed."""
    return Fuzzer(seed).run(inputs, progress)


def chunks(inputs: int, jobs: int) -> Iterator[int]:
    """Split ``inputs`` into ``jobs`` near-equal parts."""
    base, extra = divmod(inputs, jobs)
    for j in range(jobs):
        yield base + (j < extra)
