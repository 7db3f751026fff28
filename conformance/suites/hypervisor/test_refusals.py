"""What a refusal says, exactly (spec "Negotiation", "Conventions"): a refused NEGOTIATE's status, value register,
negotiate_out.features and refused, and the VM left OPEN; every undefined flag bit of every input format, each on
its own, refused with INVALID_PARAMETER and nothing acted on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pvmsi.conformance.toolkit import (
    DEFAULT_DEVICES,
    IDXD,
    MLX5,
    Session,
    alloc_entry,
    check,
    encode,
    size,
    status_name,
)
from pvmsi.spec.calls import BATCH_CALLS
from pvmsi.spec.constants import (
    ActivateEntryFlag,
    EventConfigFlag,
    Feature,
    FunctionNumber,
    KindMask,
    MsgKind,
    Status,
    group,
)
from pvmsi.spec.fastcodec import fast
from pvmsi.spec.formats import (
    ACTIVATE_ENTRY,
    ALLOC_ENTRY,
    BATCH_IN,
    BATCH_OUT,
    CLAIM_IN,
    DEACTIVATE_ENTRY,
    DEVICE_ID,
    DEVICE_INFO,
    EVENT_CONFIG_IN,
    NEGOTIATE_OUT,
)
from pvmsi.spec.iut import VmKnobs
from pvmsi.spec.layout import LeafField, layout_of

requirement = pytest.mark.requirement

# -- a refused NEGOTIATE ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A VM's knobs, the features its NEGOTIATE asks for, and what the refusal must say."""

    requirement: str
    knobs: VmKnobs
    asked: int
    status: Status
    refused: int


WITHHELD = int(Feature.SUBDEVICE | Feature.POSTED)
REFUSALS = {
    "two-unoffered-bits": Refusal(
        "HV-NEG-002",
        VmKnobs(features_withheld=WITHHELD),
        int(Feature.MSIX | Feature.SUBDEVICE | Feature.POSTED),
        Status.INVALID_PARAMETER,
        WITHHELD,
    ),
    "one-unoffered-bit": Refusal(
        "HV-NEG-002",
        VmKnobs(features_withheld=int(Feature.POSTED)),
        int(Feature.MSIX | Feature.POSTED),
        Status.INVALID_PARAMETER,
        int(Feature.POSTED),
    ),
    "two-required-bits-missing": Refusal(
        "HV-NEG-004",
        VmKnobs(features_required=int(Feature.MSIX | Feature.IMS)),
        int(Feature.MSI),
        Status.FEATURES_REFUSED,
        int(Feature.MSIX | Feature.IMS),
    ),
    "one-required-bit-missing": Refusal(
        "HV-NEG-004",
        VmKnobs(features_required=int(Feature.MSIX)),
        int(Feature.IMS),
        Status.FEATURES_REFUSED,
        int(Feature.MSIX),
    ),
}


@requirement("HV-NEG-002", "HV-NEG-004", "HV-CALL-004")
@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_negotiate_says_exactly_why(session: Session, case: str) -> None:
    """The status; zero in the value register (HV-CALL-004); negotiate_out.features zero (nothing in force) and
    refused exactly the offending bits, all of them; and the VM OPEN: the same NEGOTIATE without them succeeds."""
    r = REFUSALS[case]
    session.use(session.new_vm(DEFAULT_DEVICES, knobs=r.knobs))
    out = session.negotiate(r.asked)
    check(out.status == r.status, r.requirement, r.status.name, status_name(out.status))
    check(out.value == 0, "HV-CALL-004", "value register 0", hex(out.value))
    got = out.decode_out(NEGOTIATE_OUT)
    check(got.refused == r.refused, r.requirement, f"refused = {r.refused:#x}", hex(got.refused))
    check(got.features == 0, r.requirement, "features = 0 (nothing in force)", hex(got.features))
    fixed = (r.asked & ~r.refused) if r.status is Status.INVALID_PARAMETER else (r.asked | r.refused)
    again = session.negotiate(fixed)
    check(again.status == Status.SUCCESS, r.requirement, "the VM was left OPEN", status_name(again.status))


# -- every undefined flag bit of every input format -----------------------------------------------------------------


def undefined_bits(fmt: Any, path: str) -> list[int]:
    """The bits of flag field ``path`` of ``fmt`` that its constant group does not define."""
    f = _leaf(fmt, path)
    assert f.field.flags is not None
    defined = 0
    for _name, value, _doc in group(f.field.flags).members:
        defined |= value
    return [b for b in range(f.size * 8) if not defined >> b & 1]


def _leaf(fmt: Any, path: str) -> LeafField:
    return next(x for x in layout_of(fmt).leaves() if x.path == path)


def with_bit(record: bytes, fmt: Any, path: str, bit: int, at: int = 0) -> bytes:
    out = bytearray(record)
    out[at + _leaf(fmt, path).offset + bit // 8] |= 1 << bit % 8
    return bytes(out)


@dataclass
class Setup:
    """A negotiated VM with MLX5's MSI-X claimed, an active message (slot 0) and a reserved one (slot 1)."""

    active: int
    reserved: int


def setup(session: Session) -> Setup:
    session.ready(MLX5, int(KindMask.MSIX))
    active = session.allocated(MLX5, MsgKind.MSIX, [0])[0].handle
    b = session.reserve(MLX5, [{"kind": MsgKind.MSIX, "vector_count": 1, "slot": 1}])
    check(b.status == Status.SUCCESS, "HV-ACT-001", "reserve -> SUCCESS", status_name(b.status))
    return Setup(active, b.results[0].handle)


def _batch(fn: FunctionNumber, entry: dict[str, Any]) -> tuple[FunctionNumber, bytes, int]:
    """(call, input block, output size) of a one-entry batch on MLX5; the entry at offset size(BATCH_IN)."""
    call = BATCH_CALLS[fn]
    entry_fmt, result_fmt = fast(call.input_entry or ""), fast(call.output_entry or "")
    header = encode(BATCH_IN, {"device": MLX5.wire(), "count": 1, "start": 0})
    return fn, header + entry_fmt.encode(entry), size(BATCH_OUT) + result_fmt.size


@dataclass(frozen=True)
class FlagField:
    """A flag field of an input format, the call that carries it (built valid), and where the record sits."""

    fmt: Any
    path: str
    build: Callable[[Session, Setup], tuple[FunctionNumber, bytes, int]]
    at: int = 0


def _alloc(s: Session, st: Setup) -> tuple[FunctionNumber, bytes, int]:
    entry = alloc_entry(MsgKind.MSIX, 2, vector=s.wire_vector(0x44))
    return _batch(FunctionNumber.MSG_ALLOC, entry)


def _activate(s: Session, st: Setup) -> tuple[FunctionNumber, bytes, int]:
    entry = {"handle": st.reserved, "vcpu": 0, "vector": s.wire_vector(0x45), "flags": 0}
    entry |= {"entry_flags": int(ActivateEntryFlag.BLOCK), "index": 0}
    return _batch(FunctionNumber.MSG_ACTIVATE, entry)


def _deactivate(s: Session, st: Setup) -> tuple[FunctionNumber, bytes, int]:
    entry = {"handle": st.active, "index": 0, "entry_flags": int(ActivateEntryFlag.BLOCK)}
    return _batch(FunctionNumber.MSG_DEACTIVATE, entry)


def _claim(s: Session, st: Setup) -> tuple[FunctionNumber, bytes, int]:
    return FunctionNumber.DEVICE_CLAIM, encode(CLAIM_IN, {"device": IDXD.wire(), "kinds": int(KindMask.MSIX)}), 0


def _query(s: Session, st: Setup) -> tuple[FunctionNumber, bytes, int]:
    return FunctionNumber.DEVICE_QUERY, encode(DEVICE_ID, MLX5.wire()), size(DEVICE_INFO)


def _event_config(s: Session, st: Setup) -> tuple[FunctionNumber, bytes, int]:
    block = encode(EVENT_CONFIG_IN, {"flags": int(EventConfigFlag.ENABLE), "vcpu": 0, "vector": s.wire_vector(0xE0)})
    return FunctionNumber.EVENT_CONFIG, block, 0


ENTRY_AT = size(BATCH_IN)
FLAG_FIELDS = [
    FlagField(ALLOC_ENTRY, "flags", _alloc, ENTRY_AT),
    FlagField(ALLOC_ENTRY, "alloc_flags", _alloc, ENTRY_AT),
    FlagField(ACTIVATE_ENTRY, "flags", _activate, ENTRY_AT),
    FlagField(ACTIVATE_ENTRY, "entry_flags", _activate, ENTRY_AT),
    FlagField(DEACTIVATE_ENTRY, "entry_flags", _deactivate, ENTRY_AT),
    FlagField(BATCH_IN, "device.flags", _alloc),
    FlagField(CLAIM_IN, "kinds", _claim),
    FlagField(CLAIM_IN, "device.flags", _claim),
    FlagField(DEVICE_ID, "flags", _query),
    FlagField(EVENT_CONFIG_IN, "flags", _event_config),
]


def _state(session: Session) -> tuple[int, int]:
    """What an accepted allocation or claim would change: MLX5's messages_allocated, IDXD's claimed_kinds."""
    return int(session.device_info(MLX5).messages_allocated), int(session.device_info(IDXD).claimed_kinds)


@requirement("HV-CONV-001")
@pytest.mark.parametrize("field", FLAG_FIELDS, ids=lambda f: f"{layout_of(f.fmt).name}.{f.path}")
def test_every_undefined_flag_bit_is_refused(session: Session, field: FlagField) -> None:
    """Each undefined bit of the field, set on its own in an otherwise valid call: INVALID_PARAMETER, and nothing
    acted on (no allocation, no claim). The valid call itself then succeeds."""
    st = setup(session)
    fn, block, out_size = field.build(session, st)
    before = _state(session)
    for bit in undefined_bits(field.fmt, field.path):
        out = session.call(fn, with_bit(block, field.fmt, field.path, bit, field.at), out_size)
        check(
            out.status == Status.INVALID_PARAMETER,
            "HV-CONV-001",
            f"{layout_of(field.fmt).name}.{field.path} bit {bit} -> INVALID_PARAMETER",
            status_name(out.status),
        )
    check(_state(session) == before, "HV-CONV-001", "nothing acted on", f"{before} -> {_state(session)}")
    out = session.call(fn, block, out_size)
    check(
        out.status == Status.SUCCESS, "HV-CONV-001", "the same call without the bit -> SUCCESS", status_name(out.status)
    )
