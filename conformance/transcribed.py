"""The IUT as a hypervisor-suite test sees it through ``session.iut``: every harness request a test makes there
is written into the test's transcript with its answer, so that the report keeps every call of a test, those made
outside the session's own helpers (a second VM's COLLECT, COUNTERS, LIFECYCLE, ...) included (conformance guide,
"Reports").  The session's helpers talk to the IUT underneath and write their own, richer, lines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..spec.harness_constants import DeviceSpace, LifecycleEvent, TrapArch, TrapInstruction
from ..spec.iut import Counters, DeviceRef, DeviceSlot, FireResult, HypervisorIUT, IutInfo, VmKnobs


class TranscribedIut:
    """A :class:`~pvmsi.spec.iut.HypervisorIUT` that logs each request and its answer, then returns the answer."""

    def __init__(self, inner: HypervisorIUT, log: Callable[[str], None]) -> None:
        self._inner = inner
        self._log = log

    def __getattr__(self, name: str) -> Any:  # the wrappers' extras (scenario recording, pipelining)
        return getattr(self._inner, name)

    def hello(self) -> IutInfo:
        info = self._inner.hello()
        self._log(f"HELLO -> {info.name} {info.spec_major}.{info.spec_minor}")
        return info

    def create_vm(self, vcpus: int, ram_mib: int, devices: list[DeviceSlot], knobs: VmKnobs | None = None) -> int:
        vm = self._inner.create_vm(vcpus, ram_mib, devices, knobs)
        self._log(f"VM_CREATE {vcpus} vcpus, {ram_mib} MiB, {len(devices)} devices, knobs {knobs} -> vm {vm}")
        return vm

    def destroy_vm(self, vm: int) -> None:
        self._inner.destroy_vm(vm)
        self._log(f"VM_DESTROY vm {vm} -> OK")

    def mem_write(self, vm: int, gpa: int, data: bytes) -> None:
        self._inner.mem_write(vm, gpa, data)
        self._log(f"vm {vm} MEM_WRITE {gpa:#x} = {data.hex()} -> OK")

    def mem_read(self, vm: int, gpa: int, size: int) -> bytes:
        data = self._inner.mem_read(vm, gpa, size)
        self._log(f"vm {vm} MEM_READ {gpa:#x}/{size} -> {data.hex()}")
        return data

    def hypercall(self, vm: int, vcpu: int, fn: int, args: tuple[int, int, int, int]) -> tuple[int, int]:
        status, value = self._inner.hypercall(vm, vcpu, fn, args)
        self._log(f"vm {vm} vcpu {vcpu} HYPERCALL fn {fn:#x} args=({', '.join(map(hex, args))}) -> {status} {value:#x}")
        return status, value

    def device_write(self, vm: int, device: DeviceRef, space: DeviceSpace, offset: int, size: int, value: int) -> bool:
        exited = self._inner.device_write(vm, device, space, offset, size, value)
        self._log(f"vm {vm} DEVICE_WRITE {device} {space.name} +{offset:#x}/{size} = {value:#x} -> exit={exited}")
        return exited

    def fire(self, vm: int, device: DeviceRef, kind: int, index: int) -> FireResult:
        r = self._inner.fire(vm, device, kind, index)
        self._log(
            f"vm {vm} DEVICE_FIRE {device} kind {kind} [{index}] -> {r.outcome.name} vcpu={r.vcpu} vector={r.vector:#x}"
        )
        return r

    def config_read(self, vm: int, device: DeviceRef, offset: int, size: int) -> bytes:
        data = self._inner.config_read(vm, device, offset, size)
        self._log(f"vm {vm} CONFIG_READ {device} +{offset:#x}/{size} -> {data.hex()}")
        return data

    def trap(
        self, vm: int, vcpu: int, arch: TrapArch, instruction: TrapInstruction, regs: list[int], privilege: int = 0
    ) -> tuple[bool, list[int]]:
        handled, after = self._inner.trap(vm, vcpu, arch, instruction, regs, privilege)
        self._log(
            f"vm {vm} vcpu {vcpu} TRAP {arch.name} {instruction.name} cpl {privilege}"
            f" regs=({', '.join(map(hex, regs))}) -> handled={handled} regs=({', '.join(map(hex, after))})"
        )
        return handled, after

    def collect(self, vm: int) -> list[tuple[int, int]]:
        got = self._inner.collect(vm)
        self._log(f"vm {vm} COLLECT -> {', '.join(f'vcpu {c} vector {v:#x}' for c, v in got) or 'nothing'}")
        return got

    def counters(self, vm: int) -> Counters:
        c = self._inner.counters(vm)
        self._log(f"vm {vm} COUNTERS -> {', '.join(f'{k} {v}' for k, v in vars(c).items())}")
        return c

    def lifecycle(self, vm: int, event: LifecycleEvent, device: DeviceRef | None) -> None:
        self._inner.lifecycle(vm, event, device)
        self._log(f"vm {vm} LIFECYCLE {event.name}" + (f" {device}" if device is not None else "") + " -> OK")

    def close(self) -> None:
        self._inner.close()
