"""A harness session driven frame by frame, sans I/O, as a suite would (:class:`Session`), and the frames the
harness tests build and read: HELLO, a VM_CONFIG, an MLX5 device slot, an ERROR's status."""

from __future__ import annotations

from typing import Any

from pvmsi.conformance.harness.frames import Frame, FrameReader, build
from pvmsi.conformance.harness.server import HypervisorService
from pvmsi.reference.backend import ReferenceHypervisor
from pvmsi.spec.harness_constants import (
    DeviceProfile,
    FrameKind,
    HarnessRole,
    HarnessStatus,
)

HELLO = {"role": HarnessRole.HYPERVISOR, "spec_major": 1, "spec_minor": 0, "max_payload": 65536, "name": bytes(8)}
MLX5 = {"profile": DeviceProfile.MLX5, "segment": 0, "bus": 0, "devfn": 8}


def vm_config(vcpus: int = 1, ram_mib: int = 16, devices: int = 0) -> dict[str, int]:
    config = dict.fromkeys(("yield_after", "features_required", "features_withheld", "remap_entries"), 0)
    return config | {
        "vcpus": vcpus,
        "ram_mib": ram_mib,
        "device_count": devices,
        "max_claimed_devices": 0,
        "storm_limit": 0,
    }


def frames(stream: bytes) -> list[Frame]:
    reader = FrameReader()
    reader.feed(stream)
    out = []
    while (f := reader.next_frame()) is not None:
        out.append(f)
    return out


class Session:
    """A :class:`HypervisorService` driven frame by frame, as a suite would."""

    def __init__(self, backend: Any = None, *, greet: bool = True) -> None:
        self.svc = HypervisorService(backend if backend is not None else ReferenceHypervisor())
        self.seq = 0
        if greet:
            assert self.ask(FrameKind.HELLO, HELLO).kind is FrameKind.HELLO_ACK

    def ask(self, kind: FrameKind, body: dict[str, Any] | None = None, **kw: Any) -> Frame:
        self.seq += 1
        (f,) = frames(self.svc.receive(build(kind, self.seq, body, **kw)))
        assert f.seq == self.seq
        return f

    def vm(self, **kw: Any) -> int:
        f = self.ask(FrameKind.VM_CREATE, vm_config(**kw))
        assert f.kind is FrameKind.VM_CREATED, f
        return int(f.body.vm)


def error(f: Frame) -> tuple[HarnessStatus, int]:
    assert f.kind is FrameKind.ERROR, f.kind.name
    return HarnessStatus(f.body.code), int(f.body.offset)
