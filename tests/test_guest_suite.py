"""The guest role end to end: the guest suite against the reference guest in-process, over a Unix socket and over
a child's stdio; every faulty guest caught with its requirement id; every guest MUST named by a test; the
guest-role service answering bad frames and silent suites without hanging."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pvmsi.cli.main import main
from pvmsi.conformance.faults import GUEST_FAULTS
from pvmsi.conformance.guest import GuestRunner, HostCall, HostTrap, ReferenceGuest
from pvmsi.conformance.guest_host import HostModel
from pvmsi.conformance.guest_host_knobs import HostKnobs
from pvmsi.conformance.guest_probe import Probe
from pvmsi.conformance.harness.frames import Frame, FrameReader, build
from pvmsi.conformance.harness.guest_server import GuestService
from pvmsi.conformance.results import Verdict
from pvmsi.conformance.runner import catalogue, run
from pvmsi.reference.guest.calls import OUT_OFFSET
from pvmsi.reference.guest.core import GuestCore
from pvmsi.spec.constants import FunctionNumber, MsgKind, Status
from pvmsi.spec.harness_constants import FrameKind, GuestOp, HarnessRole, HarnessStatus, TrapArch, TrapInstruction
from pvmsi.spec.iut import GuestCommand, GuestMode
from pvmsi.spec.requirements import REQUIREMENTS, Level

PVMSI = str(Path(sys.executable).with_name("pvmsi"))


def _all_pass(iut: str) -> None:
    report = run("guest", iut, timeout=10.0)
    bad = [f"{r.test}: {r.verdict.value}: {r.message[:300]}" for r in report.results if r.verdict is not Verdict.PASS]
    assert not bad, "\n".join(bad)
    assert report.summary.pass_ >= 35
    assert report.complete


def test_suite_passes_in_process() -> None:
    start = time.perf_counter()
    _all_pass("reference")
    assert time.perf_counter() - start < 15


def test_suite_passes_over_exec_stdio() -> None:
    _all_pass(f"exec:{PVMSI} serve --role guest --stdio")


@pytest.fixture
def unix_guest() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "guest.sock")
        proc = subprocess.Popen([PVMSI, "serve", "--role", "guest", "--listen", f"unix:{path}"], stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while not Path(path).exists():
                assert proc.poll() is None, "pvmsi serve exited"
                assert time.monotonic() < deadline, "pvmsi serve did not listen"
                time.sleep(0.05)
            yield f"unix:{path}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            assert proc.stderr is not None
            proc.stderr.close()


def test_suite_passes_over_a_unix_socket(unix_guest: str) -> None:
    _all_pass(unix_guest)


@pytest.mark.parametrize("name", sorted(GUEST_FAULTS))
def test_every_faulty_guest_is_caught_with_its_id(name: str) -> None:
    fault = GUEST_FAULTS[name]
    report = run("guest", f"faulty:{name}", requirements=[fault.breaks])
    failed = [r for r in report.results if r.verdict is Verdict.FAIL]
    assert any(r.message.split(" ", 1)[0] == fault.breaks for r in failed), [r.message[:200] for r in failed]
    assert not [r for r in report.results if r.verdict in (Verdict.ERROR, Verdict.TIMEOUT)]


def test_at_least_eight_faulty_guests_breaking_distinct_requirements() -> None:
    assert len({f.breaks for f in GUEST_FAULTS.values()}) >= 8


def test_every_guest_must_has_a_faulty_guest() -> None:
    mandatory = {r.id for r in REQUIREMENTS if r.level.value in ("MUST", "MUST NOT") and r.role.value == "guest"}
    assert mandatory
    missing = sorted(mandatory - {f.breaks for f in GUEST_FAULTS.values()})
    assert not missing, f"guest MUSTs no faulty guest breaks: {missing}"


def test_a_faulty_guest_is_caught_over_stdio() -> None:
    report = run(
        "guest", f"exec:{PVMSI} serve --role guest --stdio --fault no-resume", requirements=["GUEST-BATCH-001"]
    )
    assert any(r.verdict is Verdict.FAIL and r.message.startswith("GUEST-BATCH-001") for r in report.results)


def test_every_guest_must_is_named_in_the_catalogue() -> None:
    out = CliRunner().invoke(main, ["conformance", "list", "--role", "guest", "--json"])
    assert out.exit_code == 0, out.output
    named = {rid for entry in json.loads(out.output) for rid in entry["requirements"]}
    assert all(entry["role"] == "guest" for entry in json.loads(out.output))
    musts = {r.id for r in REQUIREMENTS if r.id.startswith("GUEST-") and r.level in (Level.MUST, Level.MUST_NOT)}
    assert musts - named == set()
    assert {"GEN-CONV-001", "GEN-CONV-002", "GEN-CONV-003", "GEN-CALL-001", "GEN-STAT-001"} <= named
    assert {e.role for e in catalogue("guest")} == {"guest"}


def test_faults_cli_lists_both_roles() -> None:
    out = CliRunner().invoke(main, ["conformance", "faults", "--json"])
    assert out.exit_code == 0, out.output
    roles = {f["role"] for f in json.loads(out.output)}
    assert roles == {"hypervisor", "guest"}


def test_serve_rejects_an_unknown_guest_fault() -> None:
    out = CliRunner().invoke(main, ["serve", "--role", "guest", "--stdio", "--fault", "nope"])
    assert out.exit_code == 2
    assert "no faulty guest" in out.output


# -- the reference guest core ---------------------------------------------------------------------------------


def test_a_guest_knowing_no_kind_does_not_negotiate() -> None:
    model = HostModel(HostKnobs())
    guest = ReferenceGuest(lambda scratch: GuestCore(scratch_gpa=scratch, known_features=0))
    r = guest.command(GuestCommand(GuestOp.BOOT, scratch_gpa=0x10000), model)
    assert r.mode is GuestMode.EMULATED
    assert [c.fn for c in model.calls()] == [FunctionNumber.VERSION, FunctionNumber.GET_INFO]


def test_hypercall_actions_carry_block_sizes() -> None:
    runner = GuestRunner()
    gen = runner.run(GuestCommand(GuestOp.BOOT, scratch_gpa=0x20000))
    first = gen.send(None)
    model = HostModel(HostKnobs())
    while isinstance(first, HostTrap):  # the platform discovery comes first (GUEST-ABI-003)
        first = gen.send(model.trap(first.vcpu, first.arch, first.instruction, list(first.regs)))
    assert isinstance(first, HostCall)
    assert (first.fn, first.in_block, first.out_size) == (FunctionNumber.VERSION, b"", 0)
    second = gen.send((Status.SUCCESS, 1 << 16, b""))
    assert isinstance(second, HostCall)
    assert second.fn == FunctionNumber.GET_INFO
    assert second.out_size == 48
    assert second.args == (0, 0x20000 + OUT_OFFSET, 0, 0)  # the output block has a page of its own


# -- the guest-role service, sans-I/O ---------------------------------------------------------------------------


def _frames(data: bytes) -> list[Frame]:
    reader = FrameReader()
    reader.feed(data)
    out = []
    while (f := reader.next_frame()) is not None:
        out.append(f)
    return out


def _boot(seq: int = 7) -> bytes:
    body: dict[str, Any] = {"op": GuestOp.BOOT, "kind": 0, "count": 0, "device": {}, "vcpu": 0, "vector": 0}
    body.update({"first_slot": 0, "scratch_gpa": 0x10000})
    body["device"] = {"segment": 0, "bus": 0, "devfn": 0, "flags": 0, "subdevice_id": 0}
    return build(FrameKind.GUEST_COMMAND, seq, body)


def _greeted(svc: GuestService) -> GuestService:
    """``svc`` past HELLO (a session starts with HELLO)."""
    hello = {"role": HarnessRole.GUEST, "spec_major": 1, "spec_minor": 0, "max_payload": 65536, "name": bytes(8)}
    (ack,) = _frames(svc.receive(build(FrameKind.HELLO, 1, hello)))
    assert ack.kind is FrameKind.HELLO_ACK
    return svc


def test_service_runs_a_command_through_frames() -> None:
    svc = GuestService(GuestRunner())
    hello = {
        "role": HarnessRole.GUEST,
        "spec_major": 1,
        "spec_minor": 0,
        "max_payload": 65536,
        "name": b"t".ljust(8, b"\0"),
    }
    (ack,) = _frames(svc.receive(build(FrameKind.HELLO, 1, hello)))
    assert ack.kind is FrameKind.HELLO_ACK
    assert ack.body.role == HarnessRole.GUEST
    (call,) = _frames(svc.receive(_boot()))
    model = HostModel(HostKnobs())
    while call.kind is FrameKind.GUEST_TRAP:  # discovery (GUEST-ABI-003) first, answered with TRAP_RESULT
        b = call.body
        handled, regs = model.trap(b.vcpu, TrapArch(b.arch), TrapInstruction(b.instruction), list(b.regs))
        (call,) = _frames(svc.receive(build(FrameKind.TRAP_RESULT, call.seq, {"handled": int(handled), "regs": regs})))
    assert call.kind is FrameKind.GUEST_HYPERCALL
    assert call.body.function == FunctionNumber.VERSION
    # pvmsi absent: the guest falls back and answers the command
    (result,) = _frames(svc.receive(build(FrameKind.HYPERCALL_RESULT, call.seq, {"status": -1, "value": 0})))
    assert result.kind is FrameKind.GUEST_RESULT
    assert result.seq == 7
    assert (result.body.status, result.body.mode) == (0, GuestMode.EMULATED)


def test_service_answers_bad_frames_with_errors() -> None:
    svc = GuestService(GuestRunner())
    (err,) = _frames(svc.receive(build(FrameKind.VM_DESTROY, 3, {"vm": 1})))
    assert (err.kind, err.body.code) == (FrameKind.ERROR, HarnessStatus.NO_HELLO)  # before HELLO: nothing served
    (err,) = _frames(svc.receive(_boot(seq=3)))
    assert (err.kind, err.body.code) == (FrameKind.ERROR, HarnessStatus.NO_HELLO)
    hello = {
        "role": HarnessRole.HYPERVISOR,
        "spec_major": 1,
        "spec_minor": 0,
        "max_payload": 65536,
        "name": b"t".ljust(8, b"\0"),
    }
    (err,) = _frames(svc.receive(build(FrameKind.HELLO, 4, hello)))
    assert err.body.code == HarnessStatus.WRONG_ROLE
    _greeted(svc)
    (err,) = _frames(svc.receive(build(FrameKind.VM_DESTROY, 5, {"vm": 1})))
    assert err.body.code == HarnessStatus.WRONG_ROLE
    (err,) = _frames(svc.receive(build(FrameKind.DEVICE_RESULT, 99, {"exited": 0})))
    assert err.body.code == HarnessStatus.BAD_PAYLOAD
    out = _frames(svc.receive(b"\x00" * 16))  # bad magic: fatal
    assert out[0].body.code == HarnessStatus.BAD_MAGIC
    assert svc.closed


def test_service_ends_a_command_the_suite_does_not_answer() -> None:
    svc = _greeted(GuestService(GuestRunner(), answer_timeout=0.5))
    (call,) = _frames(svc.receive(_boot(seq=11)))
    assert call.kind is FrameKind.GUEST_TRAP  # the discovery comes first
    assert svc.expire(now=time.monotonic()) == b""
    (err,) = _frames(svc.expire(now=time.monotonic() + 1))
    assert err.kind is FrameKind.ERROR
    assert err.seq == 11
    assert "TRAP_RESULT" in err.data.decode()
    # the service is free for the next command
    (call,) = _frames(svc.receive(_boot(seq=12)))
    assert call.kind is FrameKind.GUEST_TRAP


def test_service_refuses_a_second_command_and_a_bad_scratch_page() -> None:
    svc = _greeted(GuestService(GuestRunner()))
    _frames(svc.receive(_boot(seq=1)))
    (err,) = _frames(svc.receive(_boot(seq=2)))
    assert (err.kind, err.seq, err.body.code) == (FrameKind.ERROR, 2, HarnessStatus.BAD_PAYLOAD)
    svc = _greeted(GuestService(GuestRunner()))
    bad = _boot(seq=3)[:-8] + (0x10004).to_bytes(8, "little")
    (err,) = _frames(svc.receive(bad))
    assert err.body.code == HarnessStatus.BAD_PAYLOAD


def test_service_aborts_when_the_suite_answers_with_an_error() -> None:
    svc = _greeted(GuestService(GuestRunner()))
    (call,) = _frames(svc.receive(_boot(seq=5)))
    from pvmsi.conformance.harness.frames import build_error

    (err,) = _frames(svc.receive(build_error(call.seq, HarnessStatus.INTERNAL, 0, "model broke")))
    assert (err.kind, err.seq) == (FrameKind.ERROR, 5)
    assert "model broke" in err.data.decode()


def test_model_answers_a_command_with_every_kind() -> None:
    model = HostModel(HostKnobs())
    guest = ReferenceGuest()
    guest.command(GuestCommand(GuestOp.BOOT, scratch_gpa=0x10000), model)
    from pvmsi.conformance.toolkit import MSI_DEV

    r = guest.command(GuestCommand(GuestOp.ENABLE, MSI_DEV, int(MsgKind.MSI), 4, 1, 0x40), model)
    assert (r.status, r.done) == (0, 4)
    assert model.violations == []
    assert [model.delivered(MSI_DEV, MsgKind.MSI, i, 1, 0x40 + i) for i in range(4)] == [None] * 4


@pytest.mark.parametrize("arch", ["x86_64", "arm64", "riscv64"])
@pytest.mark.parametrize("probe", list(Probe), ids=lambda p: p.value)
def test_the_reference_guest_discovers_on_each_architecture(arch: str, probe: Probe) -> None:
    """The reference guest's discovery on each architecture: pvmsi negotiated on a pvmsi platform; no pvmsi call
    under another vendor's UID / CPUID block, a zero SBI probe or CPUID path 0 (GUEST-ABI-001..003)."""
    model = HostModel(HostKnobs(probe=probe))
    guest = ReferenceGuest(lambda scratch: GuestCore(scratch_gpa=scratch, arch=arch))
    r = guest.command(GuestCommand(GuestOp.BOOT, scratch_gpa=0x10000), model)
    assert not model.violations
    assert model.probe.arch is not None
    assert model.probe.arch.name.lower() == arch
    if probe is Probe.PVMSI:
        assert r.mode is GuestMode.PVMSI
        assert model.calls()[0].fn == FunctionNumber.VERSION
    else:
        assert r.mode is GuestMode.EMULATED
        assert not model.calls()
