"""Status codes: each failure gets the one code the spec gives its condition (spec "Status codes")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.toolkit import ABSENT, MLX5, OUT_GPA, Session, alloc_entry, check, size, status_name
from pvmsi.spec.codec import encode
from pvmsi.spec.constants import Feature, FunctionNumber, KindMask, MsgKind, Status
from pvmsi.spec.formats import DEVICE_ID, DEVICE_INFO

requirement = pytest.mark.requirement


@requirement("HV-STAT-002")
def test_each_condition_gets_its_own_status(session: Session) -> None:
    """One defect per call: a bad block address, a wrong state, an unknown device, an unknown handle, a kind not
    claimed and a bad parameter each get their own code, and a correct call right after each still succeeds."""
    query = encode(DEVICE_ID, MLX5.wire())
    out = session.call(FunctionNumber.DEVICE_QUERY, query, size(DEVICE_INFO))
    check(
        out.status == Status.WRONG_STATE,
        "HV-STAT-002",
        "DEVICE_QUERY while OPEN -> WRONG_STATE",
        status_name(out.status),
    )
    session.negotiated()
    cases = [
        ("a misaligned output block", query, OUT_GPA + 4, Status.INVALID_ADDRESS),
        ("an absent device", encode(DEVICE_ID, ABSENT.wire()), OUT_GPA, Status.UNKNOWN_DEVICE),
    ]
    for what, block, out_gpa, want in cases:
        out = session.call(FunctionNumber.DEVICE_QUERY, block, size(DEVICE_INFO), out_gpa=out_gpa)
        check(out.status == want, "HV-STAT-002", f"DEVICE_QUERY of {what} -> {want.name}", status_name(out.status))
        ok = session.query(MLX5)
        check(ok.status == Status.SUCCESS, "HV-STAT-002", "the correct DEVICE_QUERY after it", status_name(ok.status))
    offered = session.info().features_offered
    session.claimed(MLX5, int(KindMask.MSIX))
    b = session.free(MLX5, [0x5A5A_0001])
    check(
        b.status == Status.UNKNOWN_HANDLE, "HV-STAT-002", "MSG_FREE of a handle never allocated", status_name(b.status)
    )
    if offered & Feature.IMS:  # IMS offered but not claimed: the kind is refused, not the parameter
        b = session.alloc(MLX5, [alloc_entry(MsgKind.IMS, 0)])
        check(b.status == Status.NOT_PERMITTED, "HV-STAT-002", "MSG_ALLOC of IMS, not claimed", status_name(b.status))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 0, vcpu=999)])
    check(b.status == Status.INVALID_PARAMETER, "HV-STAT-002", "MSG_ALLOC to vCPU 999", status_name(b.status))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 0)])
    check(b.status == Status.SUCCESS, "HV-STAT-002", "a correct MSG_ALLOC afterwards -> SUCCESS", status_name(b.status))
