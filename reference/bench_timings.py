"""The timed figures of ``pvmsi bench`` (:mod:`.bench`): in-process hypercall **throughput** (single calls and
64-entry batches), the hot-path **codec** against :mod:`struct`, the remapping table's allocation cost
(**remap_table**), and a fixed loop by which two machines' figures compare."""

from __future__ import annotations

import statistics
import struct
import sys
import time
import timeit
from collections.abc import Callable
from types import FrameType
from typing import Any

from ..spec.constants import FunctionNumber, MsgKind
from ..spec.fastcodec import fast
from .bench_setup import DEVICE_BDF, SCRATCH, VCPUS, BenchError, boot_guest
from .guest.actions import GuestDevice
from .platform.profiles import MLX5_LIKE
from .platform.remap_bench import paired_cost_ns
from .system import ReferenceSystem, SystemVm


def _claimed(kind: MsgKind = MsgKind.MSIX) -> tuple[ReferenceSystem, SystemVm]:
    g = boot_guest(MLX5_LIKE, True)
    g.driver.run(g.core.claim(GuestDevice(DEVICE_BDF.segment, DEVICE_BDF.bus, DEVICE_BDF.devfn)))
    return g.system, g.vm


def _alloc_entry(*, slot: int, vcpu: int, vector: int) -> bytes:
    """One MSI-X alloc_entry, built by field name."""
    entry = fast("alloc_entry")
    fields = entry.build(kind=int(MsgKind.MSIX), vector_count=1, slot=slot, vcpu=vcpu, vector=vector, alloc_flags=1)
    return bytes(entry.pack(*fields))  # the one-step path (PVMSI_ALLOC_ACTIVATE)


def _batch_header(count: int) -> bytes:
    hdr = fast("batch_in")
    return hdr.pack(
        *hdr.build(
            device_segment=DEVICE_BDF.segment, device_bus=DEVICE_BDF.bus, device_devfn=DEVICE_BDF.devfn, count=count
        )
    )


def _bytecodes_per_call(workload: Callable[[], object]) -> float:
    """Python bytecodes one run of ``workload`` executes, counted by tracing (load-independent; the number is
    exact for one interpreter version)."""
    count = 0

    def trace(frame: FrameType, event: str, _arg: object) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        if event == "opcode":
            count += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        workload()
    finally:
        sys.settrace(previous)
    return float(count)


def throughput(pairs: int = 20, repeat: int = 1000, batches: int = 1, batch_repeat: int = 400) -> dict[str, float]:
    """Calls per second (alternating single alloc/free) and vectors per second (64-entry batches).

    ``repeat`` repeats of ``pairs`` single alloc/free pairs (a few seconds: the machine this runs on may change
    speed for seconds at a time), then ``batch_repeat`` repeats of ``batches`` 64-entry alloc/free pairs; the
    figures are the best repeat (the least disturbed, as ``timeit`` advises) and the median one.
    """
    system, vm = _claimed()
    core, mem = system.core, vm.vm.memory
    alloc_in, alloc_out, free_in, free_out = SCRATCH, SCRATCH + 0x800, SCRATCH + 0x1000, SCRATCH + 0x1800
    mem.write(alloc_in, _batch_header(1) + _alloc_entry(slot=0, vcpu=0, vector=0x40))
    mem.write(free_in, _batch_header(1) + bytes(8))
    hypercall, read, write = core.hypercall, mem.read, mem.write
    alloc_args, free_args = (alloc_in, alloc_out, 0, 0), (free_in, free_out, 0, 0)
    fn_alloc, fn_free = int(FunctionNumber.MSG_ALLOC), int(FunctionNumber.MSG_FREE)
    handle_gpa, free_entry_gpa = alloc_out + 16, free_in + 32

    def single() -> float:
        start = time.perf_counter()
        for _ in range(pairs):
            hypercall(vm, 0, fn_alloc, alloc_args)
            write(free_entry_gpa, read(handle_gpa, 8))  # the guest hands the handle back
            hypercall(vm, 0, fn_free, free_args)
        return time.perf_counter() - start

    # The batch has blocks of its own in the same VM (a repeat frees everything it allocated).
    b_alloc_in, b_alloc_out, b_free_in, b_free_out = (SCRATCH + 0x2000 + i * 0x800 for i in range(4))
    mem.write(
        b_alloc_in,
        _batch_header(64) + b"".join(_alloc_entry(slot=i, vcpu=i % VCPUS, vector=0x40 + i) for i in range(64)),
    )
    mem.write(b_free_in, _batch_header(64) + bytes(8 * 64))
    b_alloc_args, b_free_args = (b_alloc_in, b_alloc_out, 0, 0), (b_free_in, b_free_out, 0, 0)

    def batch() -> float:
        start = time.perf_counter()
        for _ in range(batches):
            hypercall(vm, 0, fn_alloc, b_alloc_args)
            results = read(b_alloc_out + 16, 64 * 24)
            write(b_free_in + 32, b"".join(results[i * 24 : i * 24 + 8] for i in range(64)))
            hypercall(vm, 0, fn_free, b_free_args)
        return time.perf_counter() - start

    handles = core.state_of(vm).handles
    issued = handles.counter
    singles = sorted(single() for _ in range(repeat))
    batches_s = sorted(batch() for _ in range(batch_repeat))
    bytecodes = _bytecodes_per_call(single)  # one more repeat, traced
    # every timed MSG_ALLOC succeeded (a handle per vector) and every MSG_FREE too (nothing is left allocated)
    if handles.counter - issued != (repeat + 1) * pairs + batch_repeat * 64 * batches or core.state_of(vm).messages:
        raise BenchError("a timed MSG_ALLOC or MSG_FREE failed")
    check = hypercall(vm, 0, fn_alloc, alloc_args)
    if check.status != 0 or check.value != 1:
        raise BenchError(f"single MSG_ALLOC failed: {check}")
    write(free_entry_gpa, read(handle_gpa, 8))
    check = hypercall(vm, 0, fn_free, free_args)
    if check.status != 0:
        raise BenchError(f"single MSG_FREE failed: {check}")
    check = hypercall(vm, 0, fn_alloc, b_alloc_args)
    if check.status != 0 or check.value != 64:
        raise BenchError(f"64-entry MSG_ALLOC failed: {check}")
    single_s, single_med = singles[0], statistics.median(singles)
    batch_s, batch_med = batches_s[0], statistics.median(batches_s)
    loop_us = reference_loop_us()  # the machine's speed right after, to compare runs of other days and machines
    return {
        "single_alloc_free_calls_per_s": 2 * pairs / single_s,
        "single_call_us": single_s / (2 * pairs) * 1e6,
        "single_alloc_free_calls_per_s_median": 2 * pairs / single_med,
        "batch64_vectors_per_s": 64 * batches / batch_s,
        "batch64_alloc_free_pair_us": batch_s / batches * 1e6,
        "batch64_vectors_per_s_median": 64 * batches / batch_med,
        "single_call_bytecodes": bytecodes / (2 * pairs),
        "reference_loop_us": loop_us,
        "single_call_reference_loops": single_s / (2 * pairs) * 1e6 / loop_us,
    }


# -- codec -----------------------------------------------------------------------------------------------------


def codec(number: int = 5_000, repeat: int = 60) -> dict[str, float]:
    """One hot-path codec round with the derived codec vs the same by hand with :mod:`struct`, in ns."""
    bin_, ent, res, bout = fast("batch_in"), fast("alloc_entry"), fast("alloc_result"), fast("batch_out")
    hdr = _batch_header(1)
    entry = ent.pack(int(MsgKind.MSIX), 0, 1, 5, 1, 0x41, 1, 0, 0, 0)
    result_buf = bytearray(24)
    result = (0x1_0000_1234, 0xFEE0_0018, 0, 0)
    h_in, h_ent, h_res, h_out = (struct.Struct(f) for f in ("<HBBIIIHHIQ", "<BBHIIIQ", "<QQIi", "<HHiQ"))
    fast_round = (bin_.unpack_from, ent.unpack_from, res.pack_into, bout.pack)
    hand_round = (h_in.unpack_from, h_ent.unpack_from, h_res.pack_into, h_out.pack)

    def make(fns: tuple[Callable[..., Any], ...]) -> Callable[[], object]:
        unpack_hdr, unpack_entry, pack_result, pack_out = fns

        def one_round() -> object:
            unpack_hdr(hdr, 0)
            unpack_entry(entry, 0)
            pack_result(result_buf, 0, *result)
            return pack_out(1, 1, 0, 0)

        return one_round

    # Interleaved repeats, so that both codecs see the same disturbances; the best of each.
    timers = (timeit.Timer(make(fast_round)), timeit.Timer(make(hand_round)))
    best = [min(pair) for pair in zip(*([t.timeit(number) for t in timers] for _ in range(repeat)), strict=True)]
    hot, base = (b / number * 1e9 for b in best)
    return {"hot_path_ns": hot, "struct_baseline_ns": base, "ratio": hot / base}


def remap_table(repeat: int = 100, batch: int = 256) -> dict[str, float]:
    """Remapping-table allocation cost at 1% and 95% occupancy (free entries scattered, samples alternating),
    in ns."""
    low, high = paired_cost_ns(1, batch, repeat)
    return {"alloc_ns_1pct": low, "alloc_ns_95pct": high, "ratio": high / low}


def reference_loop_us(repeat: int = 200) -> float:
    """A fixed pure-Python workload (``sum(range(1000))``), best of ``repeat``: compare two machines' figures by it."""
    return min(timeit.repeat(lambda: sum(range(1000)), number=20, repeat=repeat)) / 20 * 1e6
