"""Scenario vectors: the hypervisor suite's tests, recorded once against the reference, replayable anywhere.

Each vector is one test as a list of harness-level steps (create a VM, write guest memory, issue a hypercall,
read guest memory, touch a device, fire, collect, ...) with the results a conforming hypervisor must give.
Values a hypervisor chooses itself (handles, address/data pairs, limits it reports) are *masked* in expected
bytes and *captured* by name; later inputs that carry them (a handle in a retarget or free entry, a pair the
guest writes into a device) name the capture, so a replayer substitutes its own values.  The format is
documented in conformance/vectors/README.md; :func:`replay` is the reference replayer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec.calls import BATCH_CALLS, CALLS
from ..spec.harness_constants import DeviceProfile, DeviceSpace, FireOutcome, LifecycleEvent, TrapArch, TrapInstruction
from ..spec.iut import Counters, DeviceRef, DeviceSlot, FireResult, HypervisorIUT, IutInfo, VmKnobs
from ..spec.layout import FormatLayout, format_layout
from ..spec.version import VERSION_MAJOR, VERSION_MINOR

SCENARIO_FORMAT = "pvmsi-scenario"
SCENARIO_VERSION = 1

#: Fields whose values the hypervisor chooses: masked in expected output, captured for later use.
CHOSEN: dict[str, tuple[str, ...]] = {
    "alloc_result": ("handle", "address", "data"),
    "activate_result": ("address", "data"),
    "hv_info": (
        "message_format",
        "features_offered",
        "features_required",
        "max_batch",
        "max_claimed_devices",
        "max_messages_per_vm",
        "max_messages_per_device",
    ),
    "device_info": ("message_quota", "messages_available", "vm_messages_available"),
    "event": ("handle",),
}
#: The output block of each call that has one (spec "Calls"): (header format, result entry format or None).
OUTPUTS: dict[int, tuple[str, str | None]] = {int(c.fn): (c.output, c.output_entry) for c in CALLS if c.output}
#: The batch calls whose entries name a handle: the entry format and where the handle sits in an entry.
HANDLE_INPUTS: dict[int, tuple[str, int, int]] = {
    fn: (c.input_entry, leaf.offset, leaf.size)
    for fn, c in BATCH_CALLS.items()
    if c.input_entry
    for leaf in format_layout(c.input_entry).leaves()
    if leaf.path == "handle"
}


def _field_spans(lay: FormatLayout, names: tuple[str, ...]) -> list[tuple[str, int, int]]:
    return [(leaf.path, leaf.offset, leaf.size) for leaf in lay.leaves() if leaf.path in names]


@dataclass
class _Pending:
    fn: int
    out_gpa: int
    in_gpa: int
    vm: int


@dataclass
class Recorder:
    """Wraps a hypervisor IUT and records what a test does to it, and what it answered."""

    inner: HypervisorIUT
    #: When set, every test is recorded on a host of its own, made by this factory (so that a scenario's bytes,
    #: VM ids and handles included, depend on that test alone, not on the tests recorded before it).
    new_host: Callable[[], HypervisorIUT] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    vm_names: dict[int, str] = field(default_factory=dict)
    captures: dict[int, str] = field(default_factory=dict)  # value -> capture name (handles)
    pairs: dict[tuple[int, int], str] = field(default_factory=dict)  # (address, data) -> capture name
    memory: dict[tuple[int, int], bytes] = field(default_factory=dict)  # last write per (vm, gpa)
    pending: _Pending | None = None
    pair_note: tuple[int, int] | None = None
    pair_part: int = 0

    # -- bookkeeping ------------------------------------------------------------------------------------------

    def begin(self) -> None:
        if self.new_host is not None:
            self.inner.close()
            self.inner = self.new_host()
        self.steps, self.vm_names, self.captures, self.pairs, self.memory = [], {}, {}, {}, {}
        self.pending, self.pair_note = None, None

    def _vm(self, vm: int) -> str:
        return self.vm_names.setdefault(vm, f"vm{len(self.vm_names)}")

    def annotate_pair(self, address: int, data: int) -> None:
        """The suite is about to write this pair into a device (toolkit.Session.program)."""
        self.pair_note, self.pair_part = (address, data), 0

    # -- HypervisorIUT ------------------------------------------------------------------------------------------

    def hello(self) -> IutInfo:
        return self.inner.hello()

    def create_vm(self, vcpus: int, ram_mib: int, devices: list[DeviceSlot], knobs: VmKnobs | None = None) -> int:
        vm = self.inner.create_vm(vcpus, ram_mib, devices, knobs)
        k = knobs or VmKnobs()
        self.steps.append(
            {
                "op": "create_vm",
                "vm": self._vm(vm),
                "vcpus": vcpus,
                "ram_mib": ram_mib,
                "devices": [
                    {
                        "profile": d.profile.name,
                        "segment": d.device.segment,
                        "bus": d.device.bus,
                        "devfn": d.device.devfn,
                    }
                    for d in devices
                ],
                "knobs": {
                    "yield_after": k.yield_after,
                    "features_required": k.features_required,
                    "features_withheld": k.features_withheld,
                    "remap_entries": k.remap_entries,
                    "max_claimed_devices": k.max_claimed_devices,
                    "storm_limit": k.storm_limit,
                },
            }
        )
        return vm

    def destroy_vm(self, vm: int) -> None:
        self.inner.destroy_vm(vm)
        self.steps.append({"op": "destroy_vm", "vm": self._vm(vm)})

    def mem_write(self, vm: int, gpa: int, data: bytes) -> None:
        self.inner.mem_write(vm, gpa, data)
        self.memory[(vm, gpa)] = data
        self.steps.append({"op": "mem_write", "vm": self._vm(vm), "gpa": gpa, "data": data.hex(), "refs": []})

    def hypercall(self, vm: int, vcpu: int, fn: int, args: tuple[int, int, int, int]) -> tuple[int, int]:
        self._refs_for(vm, fn, args[0])
        status, value = self.inner.hypercall(vm, vcpu, fn, args)
        self.steps.append(
            {
                "op": "hypercall",
                "vm": self._vm(vm),
                "vcpu": vcpu,
                "function": fn,
                "args": list(args),
                "expect": {"status": status, "value": value},
            }
        )
        self.pending = _Pending(fn, args[1], args[0], vm) if fn in OUTPUTS and args[1] else None
        return status, value

    def _refs_for(self, vm: int, fn: int, in_gpa: int) -> None:
        """Mark the handles in a retarget/free input block, written just before, as captured values."""
        if fn not in HANDLE_INPUTS:
            return
        writes = [s for s in self.steps[-3:] if s["op"] == "mem_write" and s["gpa"] == in_gpa]
        if not writes:
            return
        step = writes[-1]
        data = bytes.fromhex(step["data"])
        entry, at, size = HANDLE_INPUTS[fn]
        esize = format_layout(entry).size
        hdr = format_layout(BATCH_CALLS[fn].input or "").size
        for base in range(hdr, len(data) - (at + size) + 1, esize):  # an entry cut short still names its handle
            value = int.from_bytes(data[base + at : base + at + size], "little")
            if value in self.captures:
                step["refs"].append({"offset": base + at, "size": size, "capture": self.captures[value]})

    def mem_read(self, vm: int, gpa: int, size: int) -> bytes:
        data = self.inner.mem_read(vm, gpa, size)
        mask = bytearray(b"\xff" * size)
        caps: list[dict[str, Any]] = []
        p = self.pending
        if p is not None and p.vm == vm and p.out_gpa == gpa:
            self._mask_output(p.fn, data, mask, caps)
        self.pending = None
        self.steps.append(
            {
                "op": "mem_read",
                "vm": self._vm(vm),
                "gpa": gpa,
                "size": size,
                "expect": data.hex(),
                "mask": bytes(mask).hex(),
                "captures": caps,
            }
        )
        return data

    def _mask_output(self, fn: int, data: bytes, mask: bytearray, caps: list[dict[str, Any]]) -> None:
        head, entry = OUTPUTS[fn]
        lay = format_layout(head)
        for _path, off, n in _field_spans(lay, CHOSEN.get(head, ())):
            mask[off : off + n] = bytes(n)
        if entry is None:
            return
        elay = format_layout(entry)
        chosen = _field_spans(elay, CHOSEN.get(entry, ()))
        for i in range((len(data) - lay.size) // elay.size):
            base = lay.size + i * elay.size
            raw = data[base : base + elay.size]
            if raw == b"\xa5" * elay.size:
                continue  # a slot the hypervisor did not write
            values = {path: int.from_bytes(raw[off : off + n], "little") for path, off, n in chosen}
            for _path, off, n in chosen:
                mask[base + off : base + off + n] = bytes(n)
            if values.get("handle"):
                name = self.captures.setdefault(values["handle"], f"h{len(self.captures)}")
                at = base + dict((p, o) for p, o, _ in chosen)["handle"]
                caps.append({"offset": at, "size": 8, "name": name, "field": f"{entry}[{i}].handle"})
            if "address" in values:
                pair = (values["address"], values["data"])
                name = self.pairs.setdefault(pair, f"p{len(self.pairs)}")
                caps.append(
                    {
                        "offset": base + dict((p, o) for p, o, _ in chosen)["address"],
                        "size": 12,
                        "name": name,
                        "field": f"{entry}[{i}].address+data",
                    }
                )

    def device_write(self, vm: int, device: DeviceRef, space: DeviceSpace, offset: int, size: int, value: int) -> bool:
        exited = self.inner.device_write(vm, device, space, offset, size, value)
        step: dict[str, Any] = {
            "op": "device_write",
            "vm": self._vm(vm),
            "device": _dev(device),
            "space": space.name,
            "offset": offset,
            "size": size,
            "value": value,
            "expect": {"exited": exited},
            "informative": ["exited"],
        }
        if self.pair_note is not None and self.pair_note in self.pairs and self.pair_part < 3:
            step["ref"] = {
                "capture": self.pairs[self.pair_note],
                "part": ("address_lo", "address_hi", "data")[self.pair_part],
            }
            self.pair_part += 1
        self.steps.append(step)
        return exited

    def config_read(self, vm: int, device: DeviceRef, offset: int, size: int) -> bytes:
        data = self.inner.config_read(vm, device, offset, size)
        self.steps.append(
            {
                "op": "config_read",
                "vm": self._vm(vm),
                "device": _dev(device),
                "offset": offset,
                "size": size,
                "expect": data.hex(),
            }
        )
        return data

    def fire(self, vm: int, device: DeviceRef, kind: int, index: int) -> FireResult:
        r = self.inner.fire(vm, device, kind, index)
        self.steps.append(
            {
                "op": "fire",
                "vm": self._vm(vm),
                "device": _dev(device),
                "kind": kind,
                "index": index,
                "expect": {"outcome": r.outcome.name, "vcpu": r.vcpu, "vector": r.vector},
            }
        )
        return r

    def trap(
        self, vm: int, vcpu: int, arch: TrapArch, instruction: TrapInstruction, regs: list[int], privilege: int = 0
    ) -> tuple[bool, list[int]]:
        handled, after = self.inner.trap(vm, vcpu, arch, instruction, regs, privilege)
        self.steps.append(
            {
                "op": "trap",
                "vm": self._vm(vm),
                "vcpu": vcpu,
                "arch": arch.name,
                "instruction": instruction.name,
                "privilege": privilege,
                "regs": regs,
                "expect": {"handled": handled, "regs": after},
                "informative": ["handled", "regs"] if instruction is TrapInstruction.CPUID else [],
            }
        )
        return handled, after

    def collect(self, vm: int) -> list[tuple[int, int]]:
        got = self.inner.collect(vm)
        self.steps.append({"op": "collect", "vm": self._vm(vm), "expect": [list(x) for x in got]})
        return got

    def counters(self, vm: int) -> Counters:
        c = self.inner.counters(vm)
        self.steps.append({"op": "counters", "vm": self._vm(vm), "expect": c.__dict__, "informative": list(c.__dict__)})
        return c

    def lifecycle(self, vm: int, event: LifecycleEvent, device: DeviceRef | None) -> None:
        self.inner.lifecycle(vm, event, device)
        self.steps.append(
            {"op": "lifecycle", "vm": self._vm(vm), "event": event.name, "device": _dev(device) if device else None}
        )

    def close(self) -> None:
        self.inner.close()


def _dev(d: DeviceRef) -> dict[str, Any]:
    return {"segment": d.segment, "bus": d.bus, "devfn": d.devfn, "pasid": d.pasid}


def vector_document(test: str, requirements: list[str], steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": SCENARIO_FORMAT,
        "format_version": SCENARIO_VERSION,
        "spec_version": f"{VERSION_MAJOR}.{VERSION_MINOR}",
        "test": test,
        "requirements": requirements,
        "steps": steps,
    }


#: A scenario longer than this is not written (it would be a load test, not a vector); the index names it.
MAX_VECTOR_BYTES = 256 * 1024


def write_vector(directory: Path, doc: dict[str, Any]) -> Path | None:
    """Write one vector; None (and an entry in omitted.json) when it is too long to be a useful vector."""
    path: Path = directory / (str(doc["test"]).replace("::", "__") + ".json")
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if len(text) > MAX_VECTOR_BYTES:
        omitted = directory / "omitted.json"
        entries = json.loads(omitted.read_text(encoding="utf-8")) if omitted.exists() else []
        entries.append(
            {
                "test": doc["test"],
                "steps": len(doc["steps"]),
                "bytes": len(text),
                "why": f"longer than {MAX_VECTOR_BYTES} bytes: run the test itself",
            }
        )
        omitted.write_text(json.dumps(sorted(entries, key=lambda e: e["test"]), indent=1) + "\n", encoding="utf-8")
        return None
    path.write_text(text, encoding="utf-8")
    return path


# -- replay ------------------------------------------------------------------------------------------------------


class ReplayMismatch(AssertionError):
    """A replayed step gave another answer than the vector expects."""


@dataclass
class _ReplayState:
    vms: dict[str, int] = field(default_factory=dict)
    handles: dict[str, int] = field(default_factory=dict)
    pairs: dict[str, tuple[int, int]] = field(default_factory=dict)


def _masked_equal(got: bytes, expect: bytes, mask: bytes) -> bool:
    return len(got) == len(expect) and all((g & m) == (e & m) for g, e, m in zip(got, expect, mask, strict=True))


def replay(doc: dict[str, Any], iut: HypervisorIUT) -> int:
    """Replay one scenario vector against ``iut``; returns the steps checked, raises ReplayMismatch."""
    st = _ReplayState()
    checked = 0
    for n, step in enumerate(doc["steps"]):
        op = step["op"]
        where = f"{doc['test']} step {n} ({op})"
        informative = set(step.get("informative", []))
        if op == "create_vm":
            devices = [
                DeviceSlot(DeviceProfile[d["profile"]], DeviceRef(d["segment"], d["bus"], d["devfn"]))
                for d in step["devices"]
            ]
            st.vms[step["vm"]] = iut.create_vm(step["vcpus"], step["ram_mib"], devices, VmKnobs(**step["knobs"]))
            continue
        vm = st.vms[step["vm"]]
        if op == "destroy_vm":
            iut.destroy_vm(vm)
        elif op == "mem_write":
            data = bytearray(bytes.fromhex(step["data"]))
            for ref in step["refs"]:
                data[ref["offset"] : ref["offset"] + 8] = st.handles[ref["capture"]].to_bytes(8, "little")
            iut.mem_write(vm, step["gpa"], bytes(data))
        elif op == "hypercall":
            a0, a1, a2, a3 = step["args"]
            status, value = iut.hypercall(vm, step["vcpu"], step["function"], (a0, a1, a2, a3))
            exp = step["expect"]
            if (status, value) != (exp["status"], exp["value"]):
                raise ReplayMismatch(
                    f"{where}: status/value {status}/{value:#x}, expected {exp['status']}/{exp['value']:#x}"
                )
            checked += 1
        elif op == "mem_read":
            got = iut.mem_read(vm, step["gpa"], step["size"])
            if not _masked_equal(got, bytes.fromhex(step["expect"]), bytes.fromhex(step["mask"])):
                raise ReplayMismatch(f"{where}: read {got.hex()}, expected {step['expect']} under mask {step['mask']}")
            for cap in step["captures"]:
                raw = got[cap["offset"] : cap["offset"] + cap["size"]]
                if cap["size"] == 8:
                    st.handles[cap["name"]] = int.from_bytes(raw, "little")
                else:
                    st.pairs[cap["name"]] = (int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:12], "little"))
            checked += 1
        elif op == "device_write":
            written: int = step["value"]
            ref = step.get("ref")
            if ref is not None:
                address, pair_data = st.pairs[ref["capture"]]
                parts = {"address_lo": address & 0xFFFFFFFF, "address_hi": address >> 32, "data": pair_data}
                written = parts[ref["part"]]
            iut.device_write(
                vm, _ref(step["device"]), DeviceSpace[step["space"]], step["offset"], step["size"], written
            )
        elif op == "config_read":
            got = iut.config_read(vm, _ref(step["device"]), step["offset"], step["size"])
            if got.hex() != step["expect"]:
                raise ReplayMismatch(f"{where}: configuration space {got.hex()}, expected {step['expect']}")
            checked += 1
        elif op == "fire":
            r = iut.fire(vm, _ref(step["device"]), step["kind"], step["index"])
            exp = step["expect"]
            if r.outcome.name != exp["outcome"] or (
                r.outcome is FireOutcome.DELIVERED and (r.vcpu, r.vector) != (exp["vcpu"], exp["vector"])
            ):
                raise ReplayMismatch(f"{where}: {r.outcome.name} vcpu {r.vcpu} vector {r.vector:#x}, expected {exp}")
            checked += 1
        elif op == "collect":
            got_irqs = [list(x) for x in iut.collect(vm)]
            if got_irqs != step["expect"]:
                raise ReplayMismatch(f"{where}: interrupts {got_irqs}, expected {step['expect']}")
            checked += 1
        elif op == "trap":
            handled, regs = iut.trap(
                vm,
                step["vcpu"],
                TrapArch[step["arch"]],
                TrapInstruction[step["instruction"]],
                step["regs"],
                step.get("privilege", 0),
            )
            if "regs" not in informative and (handled, regs) != (step["expect"]["handled"], step["expect"]["regs"]):
                raise ReplayMismatch(f"{where}: {handled} {regs}, expected {step['expect']}")
            checked += "regs" not in informative
        elif op == "counters":
            iut.counters(vm)
        elif op == "lifecycle":
            device = _ref(step["device"]) if step["device"] else None
            iut.lifecycle(vm, LifecycleEvent[step["event"]], device)
        else:
            raise ValueError(f"{where}: unknown op {op!r}")
    return checked


def _ref(d: dict[str, Any]) -> DeviceRef:
    return DeviceRef(d["segment"], d["bus"], d["devfn"], d["pasid"])


def load_vectors(directory: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(directory.glob("*.json")):
        if path.name not in ("index.json", "omitted.json"):
            yield json.loads(path.read_text(encoding="utf-8"))
