"""What the guest suite's hypervisor model (:class:`~.guest_host.HostModel`) records of a guest under test: each
hypercall with its blocks and answer, each device access, each requirement the guest broke, and how devices and
functions are named in what it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..reference.guest.actions import GuestDevice
from ..spec.calls import BATCH_CALLS
from ..spec.codec import decode
from ..spec.constants import FunctionNumber
from ..spec.formats import BATCH_IN, BATCH_OUT
from ..spec.harness_constants import DeviceOp
from ..spec.iut import DeviceRef
from ..spec.layout import layout_of

FUNCTIONS_1_0 = {int(f) for f in FunctionNumber}
HDR = layout_of(BATCH_IN).size
OUT_HDR = layout_of(BATCH_OUT).size

DeviceKey = tuple[int, int, int, int | None]


def key_of(dev: DeviceRef) -> DeviceKey:
    return (dev.segment, dev.bus, dev.devfn, dev.pasid)


def name_of(key: DeviceKey) -> str:
    seg, bus, devfn, pasid = key
    return f"{seg:04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}" + (f"/pasid {pasid}" if pasid is not None else "")


def fn_name(fn: int) -> str:
    return FunctionNumber(fn).name if fn in FUNCTIONS_1_0 else f"fn {fn:#x}"


def guest_device(dev: DeviceRef) -> GuestDevice:
    """The reference guest's name for ``dev`` (the device the model's driver programs)."""
    return GuestDevice(dev.segment, dev.bus, dev.devfn, dev.pasid)


@dataclass(frozen=True)
class Violation:
    """A guest requirement the guest broke, and how."""

    rid: str
    detail: str
    command: str


@dataclass
class CallRecord:
    """One hypercall as the guest made it, and what the model answered."""

    index: int
    command: str
    fn: int
    args: tuple[int, int, int, int]
    in_block: bytes
    out_size: int
    status: int = 0
    value: int = 0
    out_block: bytes = b""
    device: DeviceKey | None = None
    decoded: Any = None
    entries: list[Any] = field(default_factory=list)

    @property
    def start(self) -> int:
        return int(self.decoded.start) if self.fn in BATCH_CALLS and self.decoded is not None else 0

    def results(self) -> list[Any]:
        """The results of a batch's completed entries [start, next_index), as the model wrote them."""
        if self.fn not in BATCH_CALLS:
            return []
        rfmt = BATCH_CALLS[self.fn].result_format
        rsize = layout_of(rfmt).size
        out = []
        for i in range(self.start, min(self.value, len(self.entries))):
            chunk = self.out_block[OUT_HDR + i * rsize : OUT_HDR + (i + 1) * rsize]
            if len(chunk) == rsize:
                out.append(decode(rfmt, chunk))
        return out


@dataclass
class DeviceRecord:
    """One device access of the guest."""

    index: int
    command: str
    op: DeviceOp
    device: DeviceKey
    kind: int
    slot: int
    address: int
    data: int
    vectors: int
    exited: bool = False


Event = CallRecord | DeviceRecord
