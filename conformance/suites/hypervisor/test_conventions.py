"""Byte order, reserved fields, enums, status values, exact 1.0 layouts (spec "Conventions", "Status codes",
"Versioning and extension")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.toolkit import MLX5, Session, alloc_entry, check, size, status_name
from pvmsi.spec.codec import DecodeError, decode, encode
from pvmsi.spec.constants import Feature, FunctionNumber, KindMask, MsgKind, Status
from pvmsi.spec.formats import (
    ALLOC_ENTRY,
    BATCH_IN,
    BATCH_OUT,
    CLAIM_IN,
    DEVICE_ID,
    DEVICE_INFO,
    HV_INFO,
    NEGOTIATE_IN,
    NEGOTIATE_OUT,
)
from pvmsi.spec.layout import layout_of

requirement = pytest.mark.requirement
DEFINED = {int(s) for s in Status}


def _reserved_offsets(fmt: object) -> list[int]:
    return [leaf.offset for leaf in layout_of(fmt).leaves() if leaf.field.reserved]


@requirement("GEN-CONV-001", "GEN-CONV-002", "GEN-CONV-003", "HV-STAT-001", "GEN-STAT-001")
def test_outputs_are_little_endian_with_zero_reserved_fields(session: Session) -> None:
    """Output blocks are little-endian with zero reserved fields, and every status is a defined code."""
    raw = session.call(FunctionNumber.GET_INFO, None, size(HV_INFO)).out
    check(
        int.from_bytes(raw[0:2], "little") == 1, "GEN-CONV-001", "version_major = 1 little-endian at 0", raw[0:2].hex()
    )
    outputs = [(HV_INFO, raw)]
    session.negotiated()
    outputs.append((DEVICE_INFO, session.query(MLX5).out))
    session.claimed(MLX5, int(KindMask.MSIX))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, s) for s in range(3)])
    outputs.append((BATCH_OUT, b.outcome.out[: size(BATCH_OUT)]))
    for fmt, data in outputs:
        try:
            decode(fmt, data)  # strict: reserved fields zero, no undefined flag bits, defined enums
        except DecodeError as e:
            check(False, "GEN-CONV-002", f"{layout_of(fmt).name} decodes strictly", str(e))
    for r in b.results:
        check(r.status in DEFINED, "HV-STAT-001", "a defined status in every result", str(r.status))
    for fn in FunctionNumber:
        out = session.call(fn, args=(0, 0, 0, 1))
        check(out.status in DEFINED, "HV-STAT-001", "only defined status codes", str(out.status))
        check(out.status <= 1, "GEN-STAT-001", "a failure is negative", str(out.status))


@requirement("HV-CONV-001")
def test_reserved_fields_in_inputs_are_rejected(session: Session) -> None:
    """A set reserved byte or undefined flag bit in any input block is INVALID_PARAMETER and has no effect."""
    good = encode(NEGOTIATE_IN, {"version_major": 1, "version_minor": 0, "features": int(Feature.MSIX)})
    for off in _reserved_offsets(NEGOTIATE_IN):
        bad = bytearray(good)
        bad[off] = 0x01
        out = session.call(FunctionNumber.NEGOTIATE, bytes(bad), size(NEGOTIATE_OUT))
        check(
            out.status == Status.INVALID_PARAMETER,
            "HV-CONV-001",
            f"negotiate_in byte {off} -> INVALID_PARAMETER",
            status_name(out.status),
        )
    session.negotiated()
    claim = encode(CLAIM_IN, {"device": MLX5.wire(), "kinds": int(KindMask.MSIX)})
    for off in _reserved_offsets(CLAIM_IN):
        bad = bytearray(claim)
        bad[off] = 0x80
        out = session.call(FunctionNumber.DEVICE_CLAIM, bytes(bad))
        check(
            out.status == Status.INVALID_PARAMETER,
            "HV-CONV-001",
            f"claim_in byte {off} -> INVALID_PARAMETER",
            status_name(out.status),
        )
    bad_flags = bytearray(encode(DEVICE_ID, MLX5.wire()))
    bad_flags[4] = 0x02  # an undefined device-id flag bit
    out = session.call(FunctionNumber.DEVICE_QUERY, bytes(bad_flags), size(DEVICE_INFO))
    check(
        out.status == Status.INVALID_PARAMETER,
        "HV-CONV-001",
        "undefined flag bit -> INVALID_PARAMETER",
        status_name(out.status),
    )
    # nothing was acted on: the device is still unclaimed
    info = session.device_info(MLX5)
    check(info.claimed_kinds == 0, "HV-CONV-001", "no claim took effect", str(info.claimed_kinds))
    session.claimed(MLX5, int(KindMask.MSIX))
    entry = encode(ALLOC_ENTRY, alloc_entry(MsgKind.MSIX, 0))
    for off in _reserved_offsets(ALLOC_ENTRY):
        bad = bytearray(entry)
        bad[off] = 0x01
        b = session.alloc(MLX5, [bytes(bad)])
        check(
            b.status == Status.INVALID_PARAMETER,
            "HV-CONV-001",
            f"alloc_entry byte {off} -> INVALID_PARAMETER",
            status_name(b.status),
        )
    hdr_off = _reserved_offsets(BATCH_IN)
    for off in hdr_off:
        body = bytearray(encode(BATCH_IN, {"device": MLX5.wire(), "count": 1, "start": 0}) + entry)
        body[off] = 0x01
        out = session.call(FunctionNumber.MSG_ALLOC, bytes(body), size(BATCH_OUT) + 24)
        check(
            out.status == Status.INVALID_PARAMETER,
            "HV-CONV-001",
            f"batch_in byte {off} -> INVALID_PARAMETER",
            status_name(out.status),
        )
    check(session.device_info(MLX5).messages_allocated == 0, "HV-CONV-001", "nothing allocated", "something was")


@requirement("HV-CONV-002")
def test_unknown_enum_values_are_rejected(session: Session) -> None:
    """An allocation entry with an undefined message kind (0, 4 or 0xFF) is refused with INVALID_PARAMETER."""
    session.ready()
    for kind in (0, 4, 0xFF):
        raw = bytearray(encode(ALLOC_ENTRY, alloc_entry(MsgKind.MSIX, 0)))
        raw[0] = kind
        b = session.alloc(MLX5, [bytes(raw)])
        check(
            b.status == Status.INVALID_PARAMETER,
            "HV-CONV-002",
            f"kind {kind} -> INVALID_PARAMETER",
            status_name(b.status),
        )


@requirement("GEN-VER-001", "GEN-VER-002", "HV-VER-001")
def test_version_1_0_layouts_are_accepted_exactly(session: Session) -> None:
    """A 1.x hypervisor reports major 1 and accepts a 1.0 guest's NEGOTIATE and MSG_ALLOC blocks."""
    # A hypervisor of any 1.x accepts the 1.0 blocks at their exact 1.0 sizes and answers in 1.0 layouts.
    info_raw = session.call(FunctionNumber.GET_INFO, None, size(HV_INFO)).out
    info = decode(HV_INFO, info_raw)
    check(info.version_major == 1, "GEN-VER-001", "major 1", str(info.version_major))
    out = session.negotiate(int(Feature.MSIX), minor=0)
    check(
        out.status == Status.SUCCESS,
        "HV-VER-001",
        "a 1.0 guest negotiates with any 1.x hypervisor",
        status_name(out.status),
    )
    session.claimed(MLX5, int(KindMask.MSIX))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 0)])
    check(b.status == Status.SUCCESS, "GEN-VER-002", "MSG_ALLOC takes the 1.0 entry layout", status_name(b.status))
