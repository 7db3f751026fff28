"""Fuzzing the reference hypervisor core: arbitrary registers and guest memory in, invariants checked after each.

    pvmsi fuzz --inputs 1000000 --seed 1

Every input is one hypercall from one of two VMs that share a host (and its interrupt-remapping table): a function
number (mostly defined ones, sometimes any 8-bit or 64-bit value), four argument registers (block addresses that
are valid, misaligned, page-crossing, outside RAM, overlapping, zero or random; reserved registers mostly zero) and
the bytes of the input block (a valid-looking block for the call, often mutated: bit flips, random bytes, counts
and start indices changed; or plain random bytes).  Handles in retarget and free entries come from the calling VM,
from the other VM, or from nowhere.  One input in ten enters through the register-level trap of a random
architecture instead.  Between calls the fuzzer sometimes fires device messages, forges writes from another
requester, replays another VM's pair, resets a device (FLR) or the VM, or hot-unplugs a device.

After every input it checks that no exception escaped, that the status is a defined :class:`~pvmsi.spec.constants.
Status`, that the call read each input byte at most once and wrote nothing but its output block (nothing at all on
a failed non-batch call, NEGOTIATE aside), and :func:`check_invariants`: the books of every VM add up, the
remapping table holds exactly the live pvmsi messages plus the emulator's entries, each live message's entries
deliver where its owner set them, and nothing is left of a destroyed VM.  Every fired message that is delivered
lands in the VM and on the vCPU/vector its owner set; forged and replayed writes are blocked.

The host is rebuilt every ``epoch`` inputs (with a random configuration: batch limit, yield point, quotas, table
size, offered and required features), so a run is reproducible from its seed: ``--seed S --inputs N`` replays the
first N inputs exactly.
"""

from __future__ import annotations

import random
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..spec.callconv import CONVENTIONS
from ..spec.calls import BATCH_CALLS, CALLS_BY_FN
from ..spec.constants import FEATURES_1_0, Feature, FunctionNumber, Limit, MsgKind, Status
from ..spec.fastcodec import fast
from .guest.actions import GuestDevice
from .guest.driver import InProcessDriver
from .hypervisor.arch import to_signed
from .hypervisor.config import HypervisorConfig
from .hypervisor.vmstate import DeviceKey
from .platform.iommu import Fault
from .platform.msi_format import compose
from .platform.pci import MemoryWrite, PciDevice
from .platform.platform import Delivered
from .platform.profiles import IDXD_LIKE, MLX5_LIKE, MSI_MULTI, DeviceProfile
from .platform.requester import Bdf, Requester
from .system import ReferenceSystem, SystemVm, device_keys, guest_subdevice

STATUS_VALUES = frozenset(int(s) for s in Status)
_MESSAGE_CALLS = tuple(BATCH_CALLS)
MASK64 = (1 << 64) - 1
PAGE = int(Limit.PAGE_SIZE)
SCRATCH = 0x20000
#: Guest devices of the fuzzed VMs: (profile, guest BDF).  Both VMs see an mlx5-like NIC at the same guest BDF.
VM_A_DEVICES: tuple[tuple[DeviceProfile, Bdf], ...] = (
    (MLX5_LIKE, Bdf(0, 0, 0x08)),
    (MSI_MULTI, Bdf(0, 0, 0x10)),
    (IDXD_LIKE, Bdf(0, 0, 0x18)),
)
VM_B_DEVICES: tuple[tuple[DeviceProfile, Bdf], ...] = ((MLX5_LIKE, Bdf(0, 0, 0x08)), (IDXD_LIKE, Bdf(0, 0, 0x18)))

_OUT_SIZES: dict[int, int] = {}
for _fn, _call in CALLS_BY_FN.items():
    if _call.output is not None:
        _OUT_SIZES[_fn] = fast(_call.output).size + (
            64 * fast(_call.output_entry).size if _call.output_entry is not None else 0
        )


def _raw(name: str, *values: int) -> bytes:
    """The bytes of a format's fields, unchecked (reserved fields and flags may hold anything)."""
    return fast(name).struct.pack(*values)


# -- invariants ------------------------------------------------------------------------------------------------


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
                if e is None or (e.owner_vm, e.dest_vcpu, e.vector, e.posted) != (
                    vm_id,
                    m.vcpu,
                    m.vector + i,
                    m.posted,
                ):
                    problems.append(f"VM {vm_id}: IRTE {m.irte + i} of {handle:#x} is {e}, message says {m}")
                elif e.source != Requester(src.segment, src.rid, src.pasid):
                    problems.append(f"VM {vm_id}: IRTE {m.irte + i} accepts {e.source}, device is {src}")
            if (m.address, m.data) != compose(m.irte):
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
    emulated = sum(len(system.platform.legacy.irte_indices(d)) for d in system.platform.devices)
    if table.occupancy != live + emulated:
        problems.append(f"remapping table holds {table.occupancy}, pvmsi {live} + emulation {emulated}")
    for vm_id in destroyed:
        if table.blocks_where(owner_vm=vm_id):
            problems.append(f"destroyed VM {vm_id} still owns table entries")
    return problems


def check_delivery(system: ReferenceSystem, device: PciDevice, result: Any) -> list[str]:
    """A fired message that was delivered went to the device's VM, and to the vCPU/vector its owner set."""
    if not isinstance(result, Delivered):
        return []
    d = result.delivery
    if device.vm_id is None or d.vm != device.vm_id:
        return [f"{device.name}: delivered into VM {d.vm}, device belongs to VM {device.vm_id}"]
    st = system.core.vm_states().get(d.vm)
    if st is not None:
        for m in st.messages.values():
            if m.irte <= d.irte_index < m.irte + m.count:
                i = d.irte_index - m.irte
                if (d.vcpu, d.vector) != (m.vcpu, m.vector + i):
                    return [f"{device.name}: delivered to vCPU {d.vcpu} vector {d.vector}, owner set {m}"]
                return []
    if d.irte_index not in system.platform.legacy.irte_indices(device):
        return [f"{device.name}: delivered through IRTE {d.irte_index}, which nothing of its VM holds"]
    return []


# -- the fuzzer ------------------------------------------------------------------------------------------------


@dataclass
class FuzzFailure:
    """One input that raised or broke an invariant."""

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


class Fuzzer:
    """Generates inputs and checks the core's answers; :meth:`run` drives it."""

    def __init__(self, seed: int = 0, *, epoch: int = 1000, keep_failures: int = 20) -> None:
        self.seed = seed
        self.epoch = epoch
        self.keep_failures = keep_failures
        self.rng = random.Random(seed)
        self.report = FuzzReport(seed)
        self.system: ReferenceSystem
        self.vms: list[SystemVm] = []
        self.destroyed: set[int] = set()

    # -- the host ------------------------------------------------------------------------------------------
    def new_epoch(self) -> None:
        rng = self.rng
        required = 0
        offered = int(FEATURES_1_0)
        if rng.random() < 0.2:
            offered = rng.randrange(1, 1 << 5) | int(rng.choice((Feature.MSI, Feature.MSIX, Feature.IMS)))
        if rng.random() < 0.15:
            required = offered & rng.randrange(0, 1 << 5)
        config = HypervisorConfig(
            features_offered=offered,
            features_required=required,
            max_batch=rng.choice((64, 64, 8, 1, rng.randrange(1, 65))),
            max_claimed_devices=rng.choice((16, 16, 16, 16, 2, 1)),
            max_messages_per_vm=rng.choice((8192, 8192, 8192, 8192, 96, 20)),
            max_messages_per_device=rng.choice((4096, 4096, 4096, 4096, 64, 10)),
            yield_after=rng.choice((None, None, None, 1, 3)),
            handle_seed=rng.getrandbits(32),
        )
        self.system = ReferenceSystem(config, remap_entries=rng.choice((None, None, None, 256, 64)))
        self.vms = [
            self.system.create_vm(rng.choice((1, 2, 4)), 16 << 20, VM_A_DEVICES),
            self.system.create_vm(rng.choice((1, 4)), 16 << 20, VM_B_DEVICES),
        ]
        self.destroyed = set()
        for vm in self.vms:
            if rng.random() < 0.95:
                self._setup(vm)

    def _setup(self, vm: SystemVm) -> None:
        """Negotiate and claim through valid calls, so that most inputs reach the message paths."""
        rng, core = self.rng, self.system.core
        features = core.config.features_offered & rng.choice((int(FEATURES_1_0), int(FEATURES_1_0), rng.getrandbits(5)))
        features |= core.config.features_required
        if not features & 0b111:
            features |= core.config.features_offered & 0b111
        self._write(vm, SCRATCH, _raw("negotiate_in", 1, 0, 0, features))
        core.hypercall(vm, 0, FunctionNumber.NEGOTIATE, (SCRATCH, SCRATCH + 2048, 0, 0))
        for key in self._device_keys(vm):
            if rng.random() < 0.85:
                dev = vm.device(*key)
                kinds = rng.getrandbits(4)
                if dev is not None and rng.random() < 0.85:
                    kinds = 2 * bool(dev.msi_max_vectors) | 4 * bool(dev.msix_table_size) | 8 * bool(dev.ims_slots)
                self._write(vm, SCRATCH, _raw("claim_in", *self._device_id(key), kinds, 0))
                core.hypercall(vm, 0, FunctionNumber.DEVICE_CLAIM, (SCRATCH, 0, 0, 0))

    def _device_keys(self, vm: SystemVm) -> list[DeviceKey]:
        keys: list[DeviceKey] = []
        for dev in self.system.platform.devices_of(vm.vm):
            keys.extend(device_keys(dev)[:3])  # the function and its first two sub-devices
        return keys

    @staticmethod
    def _device_id(key: DeviceKey) -> tuple[int, int, int, int, int, int]:
        seg, bus, devfn, pasid = key
        return (seg, bus, devfn, 0 if pasid is None else 1, pasid or 0, 0)

    def _write(self, vm: SystemVm, gpa: int, data: bytes) -> None:
        mem = vm.vm.memory
        if data and mem.is_ram(gpa, len(data)):
            mem.write(gpa, data)

    # -- inputs --------------------------------------------------------------------------------------------
    def _gpa(self, base: int) -> int:
        rng = self.rng
        r = rng.random()
        if r < 0.85:
            return base
        if r < 0.89:
            return base + rng.randrange(1, 8)  # misaligned
        if r < 0.92:
            return SCRATCH + PAGE - 8 * rng.randrange(1, 8)  # near the page end: large blocks cross it
        if r < 0.94:
            return rng.choice((0xFEE00000, 0x80_0000_0000, (16 << 20) - 8, 1 << 40))  # not RAM
        if r < 0.96:
            return 0
        if r < 0.98:
            return SCRATCH + 8 * rng.randrange(0, 512)  # anywhere in the page: may overlap the other block
        return rng.getrandbits(64)

    def _fn(self) -> int:
        r = self.rng.random()
        if r < 0.55:
            return int(self.rng.choice(_MESSAGE_CALLS))
        if r < 0.9:
            return int(self.rng.choice(list(FunctionNumber)))
        if r < 0.97:
            return self.rng.randrange(0, 256)
        return self.rng.getrandbits(64)

    def _handle(self, vm: SystemVm) -> int:
        rng = self.rng
        states = self.system.core.vm_states()
        r = rng.random()
        own = states.get(vm.vm_id)
        other = [st for vid, st in states.items() if vid != vm.vm_id]
        if r < 0.7 and own is not None and own.messages:
            return rng.choice(list(own.messages))
        if r < 0.85 and other and other[0].messages:
            return rng.choice(list(other[0].messages))  # cross-VM handle: must be UNKNOWN_HANDLE
        if r < 0.92 and own is not None and own.messages:
            return rng.choice(list(own.messages)) ^ (1 << rng.randrange(64))  # a guessed neighbour
        return rng.getrandbits(64)

    def _block(self, vm: SystemVm, fn: int) -> bytes:
        rng = self.rng
        call = CALLS_BY_FN.get(fn)
        if call is None or call.input is None or rng.random() < 0.08:
            return rng.randbytes(8 * rng.randrange(0, 40))
        keys = self._device_keys(vm) or [(0, 0, 0x08, None)]
        key = rng.choice(keys)
        if rng.random() < 0.05:
            key = (rng.getrandbits(16), rng.getrandbits(8), rng.getrandbits(8), rng.choice((None, rng.getrandbits(21))))
        dev_id = self._device_id(key)
        if call.input == "negotiate_in":
            raw = _raw("negotiate_in", 1, rng.choice((0, 0, 1)), 0, rng.getrandbits(6))
        elif call.input == "device_id":
            raw = _raw("device_id", *dev_id)
        elif call.input == "claim_in":
            raw = _raw("claim_in", *dev_id, rng.getrandbits(4), 0)
        else:
            count = rng.choice((1, 1, 1, 2, 8, 64, rng.randrange(1, 70)))
            kind_hint = MsgKind.MSI if key[2] == 0x10 else MsgKind.IMS if key[3] is not None else rng.choice((2, 3))
            start = 0 if rng.random() < 0.8 else rng.randrange(0, count + 1)
            raw = _raw("batch_in", *dev_id, count, start, 0, 0) + b"".join(
                self._entry(vm, call.input_entry or "", kind_hint) for _ in range(count)
            )
        if rng.random() < 0.25:
            raw = self._mutate(raw)
        return raw

    def _entry(self, vm: SystemVm, name: str, kind_hint: int) -> bytes:
        rng = self.rng
        if name == "alloc_entry":
            kind = kind_hint if rng.random() < 0.85 else rng.choice((0, 1, 2, 3, 4))
            n = 1 if kind != MsgKind.MSI or rng.random() < 0.3 else rng.choice((1, 2, 4, 8, 32, 3, 64))
            slot = 0 if kind == MsgKind.MSI else rng.randrange(0, 128) if rng.random() < 0.95 else 5000
            vcpu = 0 if rng.random() < 0.9 else rng.choice((1, 3, 5))
            vector = rng.randrange(32, 200) if rng.random() < 0.95 else rng.randrange(0, 300)
            return _raw("alloc_entry", kind, rng.choice((0, 0, 1)), n, slot, vcpu, min(vector, 2**32 - 1), 0)
        if name == "retarget_entry":
            return _raw(
                "retarget_entry",
                self._handle(vm),
                rng.choice((0, 1, 3, 7)),
                rng.randrange(20, 270),
                rng.choice((0, 0, 1)),
                0,
                0,
                0,
            )
        return _raw("free_entry", self._handle(vm))

    def _mutate(self, raw: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(raw)
        if not buf:
            return raw
        for _ in range(rng.randrange(1, 5)):
            r = rng.random()
            i = rng.randrange(len(buf))
            if r < 0.5:
                buf[i] ^= 1 << rng.randrange(8)
            elif r < 0.8:
                buf[i] = rng.getrandbits(8)
            elif r < 0.9 and len(buf) >= 32:
                buf[16:18] = rng.randrange(0, 70).to_bytes(2, "little")  # batch count
            elif len(buf) >= 32:
                buf[18:20] = rng.randrange(0, 70).to_bytes(2, "little")  # batch start
        if rng.random() < 0.1:
            del buf[rng.randrange(len(buf)) :]
        return bytes(buf)

    # -- one input -----------------------------------------------------------------------------------------
    def step(self, index: int) -> None:
        rng = self.rng
        live = [vm for vm in self.vms if vm.vm_id not in self.destroyed]
        if not live:
            self.new_epoch()
            live = self.vms
        if rng.random() < 0.06:
            self._event(index, rng.choice(live))
            live = [vm for vm in self.vms if vm.vm_id not in self.destroyed]
            if not live:
                return
        vm = rng.choice(live)
        fn = self._fn()
        in_gpa, out_gpa = self._gpa(SCRATCH), self._gpa(SCRATCH + 2048)
        block = self._block(vm, fn)
        self._write(vm, in_gpa, block)
        call = CALLS_BY_FN.get(fn)
        args = [in_gpa, out_gpa, 0 if rng.random() < 0.98 else rng.getrandbits(64), 0]
        if rng.random() < 0.01:
            args[3] = rng.getrandbits(64)
        if call is not None and rng.random() < 0.95:  # registers of an absent block are zero
            args[0] = args[0] if call.input is not None else 0
            args[1] = args[1] if call.output is not None else 0
        if rng.random() < 0.05:  # the register that should be zero (no block) holds an address, or vice versa
            args[rng.randrange(2)] = 0
        mem = vm.vm.memory
        if rng.random() < 0.1:
            status = self._trap(vm, fn, args)
            if status is None:
                return
        else:
            with mem.track() as tracker:
                result = self.system.core.hypercall(vm, rng.randrange(vm.vcpu_count), fn, tuple(args))
            status = result.status
            self._check_access(index, fn, args, status, tracker)
            if status < 0 and result.value != 0 and (call is None or not call.batched):
                self._fail(index, "value", f"fn {fn:#x} failed with {status} but value {result.value}")
        if fn == FunctionNumber.RESET and status == Status.SUCCESS and rng.random() < 0.8:
            self._setup(vm)  # a guest that reset its pvmsi state negotiates again
        if status not in STATUS_VALUES:
            self._fail(index, "status", f"fn {fn:#x} returned undefined status {status}")
        else:
            self.report.statuses[Status(status).name] += 1
        for problem in check_invariants(self.system, self.destroyed):
            self._fail(index, "invariant", problem)

    def _trap(self, vm: SystemVm, fn: int, args: list[int]) -> int | None:
        rng = self.rng
        cc = rng.choice(CONVENTIONS)
        regs = {r: rng.getrandbits(64) for r in ("rax", "rbx", "rcx", "rdx", "rsi", "x0", "x1", "x2", "x3", "x4")}
        regs.update({"a0": 0, "a1": 0, "a2": 0, "a3": 0, "a6": 0, "a7": 0})
        if rng.random() < 0.9:
            regs[cc.function_id_register] = cc.function_id(fn & 0xFF) if fn < 256 else fn
            if cc.extra_id_register:
                regs[cc.extra_id_register] = 0x0850564D
            for reg, value in zip(cc.argument_registers, args, strict=True):
                regs[reg] = value
        out = self.system.trap(vm, 0, cc.arch, regs)
        if out is None:
            self.report.events["trap_not_pvmsi"] += 1
            return None
        return to_signed(out[cc.status_register])

    def _check_access(self, index: int, fn: int, args: list[int], status: int, tracker: Any) -> None:
        if tracker.reads and tracker.max_reads > 1:
            self._fail(index, "read-once", f"fn {fn:#x}: bytes read twice {tracker.reread()[:4]}")
        if not tracker.writes:
            return
        call = CALLS_BY_FN.get(fn)
        out_gpa = args[1]
        bound = _OUT_SIZES.get(fn, 0)
        outside = [g for g in tracker.writes if not out_gpa <= g < out_gpa + bound]
        if outside:
            self._fail(index, "write-outside", f"fn {fn:#x} wrote {len(outside)} bytes outside its output block")
        if status < 0 and call is not None and call.output_entry is None and call.fn is not FunctionNumber.NEGOTIATE:
            self._fail(index, "write-on-failure", f"{call.name} failed with {status} but wrote its output block")

    def _event(self, index: int, vm: SystemVm) -> None:
        rng = self.rng
        platform = self.system.platform
        devices = platform.devices_of(vm.vm)
        r = rng.random()
        if r < 0.3:
            self._program_and_fire(index, vm)
        elif r < 0.55 and devices:
            self.report.events["fire"] += 1
            dev = rng.choice(devices)
            kinds = [k for k in MsgKind if dev.kinds & (1 << k)]
            kind = rng.choice(kinds)
            size = {MsgKind.MSI: dev.msi_max_vectors, MsgKind.MSIX: dev.msix_table_size, MsgKind.IMS: dev.ims_slots}
            slot = rng.randrange(min(size[kind], 70))
            outcome = platform.fire(dev, kind, slot)
            self.report.events[f"fire_{type(outcome).__name__.lower()}"] += 1
            for problem in check_delivery(self.system, dev, outcome):
                self._fail(index, "delivery", problem)
        elif r < 0.75:
            self._attack(index, vm)
        elif r < 0.87 and devices:
            self.report.events["flr"] += 1
            g = rng.choice(devices).guest
            assert g is not None
            self.system.flr(vm, g)
        elif r < 0.95:
            self.report.events["vm_reset"] += 1
            self.system.reset_vm(vm)
            if rng.random() < 0.7:
                self._setup(vm)
        elif r < 0.98 and devices:
            self.report.events["hot_unplug"] += 1
            g = rng.choice(devices).guest
            assert g is not None
            self.system.unplug(vm, g)
        else:
            self.report.events["vm_destroy"] += 1
            self.system.destroy_vm(vm)
            self.destroyed.add(vm.vm_id)

    def _program_and_fire(self, index: int, vm: SystemVm) -> None:
        """Write a live message's pair into its device as the guest would, fire it: it must deliver as set."""
        rng = self.rng
        st = self.system.core.vm_states().get(vm.vm_id)
        if st is None or not st.messages:
            return
        m = rng.choice(list(st.messages.values()))
        seg, bus, devfn, pasid = m.device
        InProcessDriver(self.system, vm).install(
            GuestDevice(seg, bus, devfn, pasid), m.kind, m.slot, m.address, m.data, m.count
        )
        pci = vm.pci(seg, bus, devfn)
        assert pci is not None
        i = rng.randrange(m.count)
        slot = i if m.kind is MsgKind.MSI else m.slot
        if pasid is not None:
            sub = guest_subdevice(pci, pasid)
            assert sub is not None
            slot = sub.slot(m.slot)
        outcome = self.system.platform.fire(pci, m.kind, slot)
        self.report.events[f"program_fire_{type(outcome).__name__.lower()}"] += 1
        if pasid is None and m.kind is MsgKind.IMS and pci.subdevice_of_slot(slot) is not None:
            # Known modelling gap (reported): the parent function is offered every IMS slot, but the platform tags
            # a slot partitioned to a sub-device with that sub-device's PASID, so such a message is blocked.
            # Blocked is safe; it is counted, not failed.
            self.report.events["parent_ims_slot_of_subdevice"] += 1
            if isinstance(outcome, Delivered):
                self._fail(index, "isolation", f"parent message {m} delivered with a sub-device's PASID")
            return
        d = outcome.delivery if isinstance(outcome, Delivered) else None
        if d is None or (d.vm, d.vcpu, d.vector) != (vm.vm_id, m.vcpu, m.vector + i):
            self._fail(index, "delivery", f"live message {m} (vector +{i}) fired: {outcome}")

    def _attack(self, index: int, vm: SystemVm) -> None:
        """A live message of ``vm`` written by another requester (forged), or by a device of another VM (replay)."""
        rng = self.rng
        st = self.system.core.vm_states().get(vm.vm_id)
        if st is None or not st.messages:
            return
        m = rng.choice(list(st.messages.values()))
        claim = st.claims[m.device]
        src = claim.source
        platform = self.system.platform
        mine = Requester(src.segment, src.rid)
        others = [d for d in platform.devices if d.vm_id is not None and d.requester() != mine]
        if rng.random() < 0.5 or not others:
            self.report.events["forged_write"] += 1
            requester = Requester(src.segment, src.rid ^ 0x0100, None)
            if src.pasid is not None and rng.random() < 0.5:
                requester = Requester(src.segment, src.rid, (src.pasid + 1) & 0xFFFFF)  # another sub-device
        else:
            self.report.events["replay_write"] += 1
            requester = rng.choice(others).requester()
        outcome = platform.route(MemoryWrite(requester, m.address, m.data))
        if not isinstance(outcome, Fault):
            self._fail(index, "isolation", f"write of {m} from {requester} was delivered: {outcome}")

    def _fail(self, index: int, what: str, detail: str) -> None:
        self.report.failure_count += 1
        if len(self.report.failures) < self.keep_failures:
            self.report.failures.append(FuzzFailure(index, what, detail))

    # -- driving -------------------------------------------------------------------------------------------
    def run(self, inputs: int, progress: Callable[[int], None] | None = None) -> FuzzReport:
        start = time.perf_counter()
        for index in range(inputs):
            if index % self.epoch == 0:
                self.new_epoch()
            try:
                self.step(index)
            except Exception as e:  # an escaped exception is the failure the fuzzer hunts
                self._fail(index, "exception", "".join(traceback.format_exception(e))[-2000:])
                self.new_epoch()
            self.report.inputs = index + 1
            if progress is not None and (index + 1) % 1000 == 0:
                progress(index + 1)
        self.report.elapsed_s = time.perf_counter() - start
        return self.report


def fuzz(inputs: int, seed: int = 0, *, progress: Callable[[int], None] | None = None) -> FuzzReport:
    """Run ``inputs`` fuzz inputs from ``seed``; the report says whether any failed and how."""
    return Fuzzer(seed).run(inputs, progress)


def chunks(inputs: int, jobs: int) -> Iterator[int]:
    """Split ``inputs`` into ``jobs`` near-equal parts."""
    base, extra = divmod(inputs, jobs)
    for j in range(jobs):
        yield base + (j < extra)
