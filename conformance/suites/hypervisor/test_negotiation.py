"""Version and feature negotiation, and the VM state machine (spec "Version and feature negotiation")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.toolkit import DEFAULT_DEVICES, IDXD, MLX5, Session, alloc_entry, check, status_name
from pvmsi.spec.calls import CALLS_BY_FN
from pvmsi.spec.constants import FEATURES_1_0, DeliveryFlag, Feature, FunctionNumber, KindMask, MsgKind, Status
from pvmsi.spec.formats import NEGOTIATE_OUT
from pvmsi.spec.iut import VmKnobs

requirement = pytest.mark.requirement
option = pytest.mark.option

AFTER_NEGOTIATION = (
    FunctionNumber.DEVICE_QUERY,
    FunctionNumber.DEVICE_CLAIM,
    FunctionNumber.DEVICE_RELEASE,
    FunctionNumber.MSG_ALLOC,
    FunctionNumber.MSG_ACTIVATE,
    FunctionNumber.MSG_FREE,
)


@requirement("HV-STATE-001", "HV-STATE-002")
def test_calls_before_negotiation_are_wrong_state(session: Session) -> None:
    """Device and message calls while OPEN are WRONG_STATE, and the state is per VM, not per vCPU."""
    for fn in AFTER_NEGOTIATION:
        call = CALLS_BY_FN[fn]
        out = session.call(fn, b"\0" * 64 if call.input else None, 64 if call.output else 0)
        check(
            out.status == Status.WRONG_STATE,
            "HV-STATE-002",
            f"{fn.name} while OPEN -> WRONG_STATE",
            status_name(out.status),
        )
    check(
        session.negotiate().status == Status.SUCCESS, "HV-STATE-001", "VM still OPEN, NEGOTIATE succeeds", "it failed"
    )
    # one state per VM, whichever vCPU calls: negotiated on vCPU 0, the VM is NEGOTIATED for vCPU 2 too ...
    out = session.query(MLX5, vcpu=2)
    check(out.status == Status.SUCCESS, "HV-STATE-001", "DEVICE_QUERY from vCPU 2 -> SUCCESS", status_name(out.status))
    # ... and RESET from vCPU 3 puts the whole VM back in OPEN
    check(session.reset(vcpu=3).status == Status.SUCCESS, "HV-RESET-003", "RESET -> SUCCESS", "it failed")
    out = session.query(MLX5)
    check(
        out.status == Status.WRONG_STATE,
        "HV-STATE-001",
        "DEVICE_QUERY from vCPU 0 after RESET from vCPU 3 -> WRONG_STATE",
        status_name(out.status),
    )


@requirement("HV-NEG-001")
def test_version_mismatch(session: Session) -> None:
    """NEGOTIATE of version 2.0, 0.0 or 1.65535 is VERSION_MISMATCH and leaves the VM OPEN."""
    for major, minor in ((2, 0), (0, 0), (1, 0xFFFF)):
        out = session.negotiate(major=major, minor=minor)
        check(
            out.status == Status.VERSION_MISMATCH,
            "HV-NEG-001",
            f"{major}.{minor} -> VERSION_MISMATCH",
            status_name(out.status),
        )
    check(session.negotiate().status == Status.SUCCESS, "HV-NEG-001", "VM left OPEN", "NEGOTIATE then failed")


@requirement("HV-NEG-002")
def test_unoffered_bits_are_refused_and_reported(session: Session) -> None:
    """NEGOTIATE of an unoffered bit is INVALID_PARAMETER, reports it in refused, and leaves the VM OPEN."""
    offered = session.info().features_offered
    extra = 1 << 40
    out = session.negotiate(offered | extra)
    check(out.status == Status.INVALID_PARAMETER, "HV-NEG-002", "INVALID_PARAMETER", status_name(out.status))
    refused = out.decode_out(NEGOTIATE_OUT).refused
    check(refused == extra, "HV-NEG-002", f"refused = {extra:#x}", hex(refused))
    check(session.negotiate(offered).status == Status.SUCCESS, "HV-NEG-002", "VM left OPEN", "NEGOTIATE failed")


@requirement("HV-NEG-003")
def test_no_message_kind_is_invalid(session: Session) -> None:
    """NEGOTIATE of a feature set without any message kind (MSI, MSI-X, IMS) is INVALID_PARAMETER."""
    offered = session.info().features_offered
    out = session.negotiate(offered & ~int(Feature.MSI | Feature.MSIX | Feature.IMS))
    check(out.status == Status.INVALID_PARAMETER, "HV-NEG-003", "INVALID_PARAMETER", status_name(out.status))


@requirement("HV-NEG-004")
def test_missing_required_feature_is_refused_visibly(session: Session) -> None:
    """NEGOTIATE lacking a required feature gets FEATURES_REFUSED, naming it in refused; the VM stays OPEN."""
    vm = session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(features_required=int(Feature.MSIX)))
    session.use(vm)
    info = session.info()
    check(
        info.features_required == Feature.MSIX, "HV-DISC-004", "features_required = MSIX", hex(info.features_required)
    )
    out = session.negotiate(int(Feature.IMS))
    check(out.status == Status.FEATURES_REFUSED, "HV-NEG-004", "FEATURES_REFUSED", status_name(out.status))
    refused = out.decode_out(NEGOTIATE_OUT).refused
    check(refused == Feature.MSIX, "HV-NEG-004", "refused = MSIX", hex(refused))
    check(
        session.negotiate(int(Feature.IMS | Feature.MSIX)).status == Status.SUCCESS,
        "HV-NEG-004",
        "VM left OPEN: the next NEGOTIATE succeeds",
        "it failed",
    )


KIND_BITS = int(Feature.MSI | Feature.MSIX | Feature.IMS)


@requirement("HV-NEG-004")
@pytest.mark.parametrize("required", list(Feature), ids=lambda f: f.name.lower())
def test_every_required_feature_is_enforced(session: Session, required: Feature) -> None:
    """Whichever offered feature the VM requires, a message kind or not (SUBDEVICE, POSTED): NEGOTIATE of every
    other offered feature is FEATURES_REFUSED with exactly that bit in refused and features zero, the value register
    zero, and the VM stays OPEN; with the bit added NEGOTIATE succeeds."""
    offered = session.info().features_offered & int(FEATURES_1_0)
    others = offered & ~int(required)
    if not offered & required or not others & KIND_BITS:
        pytest.skip(f"unsupported: {required.name} not offered, or no other message kind to negotiate without it")
    session.use(session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(features_required=int(required))))
    out = session.negotiate(others)
    body = out.decode_out(NEGOTIATE_OUT)
    check(
        (out.status, out.value, body.features, body.refused) == (Status.FEATURES_REFUSED, 0, 0, int(required)),
        "HV-NEG-004",
        f"FEATURES_REFUSED, value 0, features 0, refused {int(required):#x} ({required.name})",
        f"{status_name(out.status)}, value {out.value:#x}, features {body.features:#x}, refused {body.refused:#x}",
    )
    out = session.query(MLX5)
    check(
        out.status == Status.WRONG_STATE,
        "HV-NEG-004",
        "VM left OPEN: DEVICE_QUERY -> WRONG_STATE",
        status_name(out.status),
    )
    out = session.negotiate(offered)
    check(out.status == Status.SUCCESS, "HV-NEG-004", f"with {required.name} -> SUCCESS", status_name(out.status))


@requirement("HV-NEG-005")
def test_accepted_features_are_in_force(session: Session) -> None:
    """A successful NEGOTIATE returns the accepted features in its block and value, and they can be used."""
    wanted = int(Feature.MSIX | Feature.IMS)
    out = session.negotiate(wanted)
    check(out.status == Status.SUCCESS, "HV-NEG-005", "SUCCESS", status_name(out.status))
    body = out.decode_out(NEGOTIATE_OUT)
    check(
        body.features == wanted and out.value == wanted,
        "HV-NEG-005",
        f"features {wanted:#x} in block and value",
        f"{body.features:#x} / {out.value:#x}",
    )
    check(
        session.claim(MLX5, int(KindMask.MSIX | KindMask.IMS)).status == Status.SUCCESS,
        "HV-NEG-005",
        "a negotiated kind can be claimed",
        "it could not",
    )


@requirement("HV-NEG-006", "HV-NEG-007")
def test_second_negotiation_is_wrong_state(session: Session) -> None:
    """A second NEGOTIATE is WRONG_STATE, and the feature set accepted first stays in force."""
    posted = session.info().features_offered & int(Feature.POSTED)
    session.negotiated(int(Feature.MSIX) | posted)
    out = session.negotiate(int(Feature.MSIX | Feature.IMS))
    check(out.status == Status.WRONG_STATE, "HV-NEG-006", "WRONG_STATE", status_name(out.status))
    out = session.claim(MLX5, int(KindMask.MSIX))
    check(
        out.status == Status.SUCCESS,
        "HV-NEG-007",
        "the first set stays in force (claim MSI-X)",
        status_name(out.status),
    )
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 0)])
    check(b.status == Status.SUCCESS, "HV-NEG-007", "allocation under the accepted set", status_name(b.status))
    if posted:  # every accepted bit stays usable: POSTED was accepted, so the flag is permitted
        b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 1, flags=int(DeliveryFlag.POSTED))])
        check(b.status == Status.SUCCESS, "HV-NEG-007", "a POSTED allocation (POSTED accepted)", status_name(b.status))


@requirement("HV-NEG-008")
def test_features_not_in_force_are_not_permitted(session: Session) -> None:
    """Using IMS, a sub-device id or POSTED delivery without its feature negotiated is NOT_PERMITTED."""
    session.negotiated(int(Feature.MSIX))
    out = session.claim(MLX5, int(KindMask.IMS))
    check(
        out.status == Status.NOT_PERMITTED, "HV-NEG-008", "IMS not negotiated -> NOT_PERMITTED", status_name(out.status)
    )
    out = session.query(IDXD.with_pasid(1))
    check(
        out.status == Status.NOT_PERMITTED,
        "HV-NEG-008",
        "sub-device id without SUBDEVICE -> NOT_PERMITTED",
        status_name(out.status),
    )
    session.claimed(MLX5, int(KindMask.MSIX))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 0, flags=int(DeliveryFlag.POSTED))])
    check(
        b.status == Status.NOT_PERMITTED, "HV-NEG-008", "POSTED without feature -> NOT_PERMITTED", status_name(b.status)
    )
