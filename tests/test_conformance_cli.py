"""``pvmsi conformance run`` as a user meets it: ICS, selection, usage errors, unusable IUTs, exit codes and
interrupted runs (a silent or dead IUT: test_conformance_dead_iut.py; what the terminal shows:
test_conformance_output.py).

CLI runs whose exit code matters are subprocesses, started together by a module fixture so that their start-up
costs overlap; the rest runs in-process through :func:`pvmsi.conformance.runner.run`.
"""

from __future__ import annotations

import ast
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from pvmsi.cli.main import main
from pvmsi.conformance import results
from pvmsi.conformance.ics import OPTION_NAMES, Ics, IcsError, default_ics, load_ics
from pvmsi.conformance.plugin import SUITES
from pvmsi.conformance.results import Report, Verdict
from pvmsi.conformance.runner import UsageError, catalogue, run
from pvmsi.spec.requirements import by_id

PVMSI = str(Path(sys.executable).with_name("pvmsi"))
WAIT = 60.0

ICS_WITHOUT_IMS = """\
[implementation]
name = "no-ims-hv"
version = "0.1"
role = "hypervisor"
spec_version = "1.0"

[options]
ims = false
"""
BAD_ICS = {
    "value": ('[implementation]\nname = "x"\nrole = "hypervisor"\n[options]\nims = "maybe"\n', "options.ims"),
    "key": ('[implementation]\nname = "x"\nrole = "hypervisor"\n[options]\nteleport = true\n', "options.teleport"),
    "role": ('[implementation]\nname = "x"\nrole = "toaster"\n', "implementation.role"),
    "missing": ("[options]\nims = true\n", "implementation"),
    "toml": ('[implementation\nname = "x"\n', "not valid TOML"),
}
#: Values a lax reader would coerce (the strings "yes" and "off" to booleans) or accept (a spec version this suite
#: does not check): the ICS is validated strictly.
STRICT_ICS = {
    "yes": ('[implementation]\nname = "x"\nrole = "hypervisor"\n[options]\nims = "yes"\n', "options.ims"),
    "off": ('[implementation]\nname = "x"\nrole = "hypervisor"\n[options]\nposted = "off"\n', "options.posted"),
    "number": ('[implementation]\nname = "x"\nrole = "hypervisor"\n[options]\nflr = 1\n', "options.flr"),
    "major": ('[implementation]\nname = "x"\nrole = "hypervisor"\nspec_version = "7.3"\n', "checks pvmsi 1.0"),
    "name": ('[implementation]\nname = ""\nrole = "hypervisor"\n', "implementation.name"),
}
GUEST_ICS = '[implementation]\nname = "a-guest"\nrole = "guest"\nspec_version = "1.0"\n'


def option_tests(option: str) -> set[str]:
    """The hypervisor tests marked ``@option(...)`` with ``option`` (read from the suite's source)."""
    found: set[str] = set()
    for path in sorted((SUITES / "hypervisor").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                if (
                    isinstance(deco, ast.Call)
                    and isinstance(deco.func, ast.Name)
                    and deco.func.id == "option"
                    and any(isinstance(a, ast.Constant) and a.value == option for a in deco.args)
                ):
                    found.add(f"{path.stem}::{node.name}")
    return found


# -- CLI subprocesses ----------------------------------------------------------------------------------------------


@dataclass
class Cli:
    proc: subprocess.Popen[str]
    code: int | None = None
    out: str = ""
    err: str = ""

    def result(self) -> Cli:
        if self.code is None:
            try:
                self.out, self.err = self.proc.communicate(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
                raise
            self.code = self.proc.returncode
        return self


def cli(*args: str) -> Cli:
    return Cli(subprocess.Popen([PVMSI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Cli]]:
    tmp = tmp_path_factory.mktemp("cli")
    started: dict[str, Cli] = {}
    for name, (text, _) in BAD_ICS.items():
        (tmp / f"bad-{name}.toml").write_text(text)
        started[f"ics-{name}"] = cli("conformance", "run", "--ics", str(tmp / f"bad-{name}.toml"))
    started["ics-absent"] = cli("conformance", "run", "--ics", str(tmp / "absent.toml"))
    (tmp / "guest.toml").write_text(GUEST_ICS)
    started["ics-other-role"] = cli("conformance", "run", "--ics", str(tmp / "guest.toml"))
    (tmp / "yes.toml").write_text(STRICT_ICS["yes"][0])
    started["ics-yes"] = cli("conformance", "run", "--ics", str(tmp / "yes.toml"))
    started["timeout-negative"] = cli("conformance", "run", "--timeout", "-1")
    started["unknown-id"] = cli("conformance", "run", "--requirement", "HV-NOPE-999")
    started["unknown-section"] = cli("conformance", "run", "--section", "teleportation")
    started["unix-absent"] = cli("conformance", "run", "--iut", f"unix:{tmp / 'absent.sock'}", "--timeout", "0.5")
    started["exec-absent"] = cli("conformance", "run", "--iut", f"exec:{tmp / 'no-such-hypervisor'} --stdio")
    started["exec-unparsable"] = cli("conformance", "run", "--iut", "exec:'unterminated")
    started["bogus"] = cli("conformance", "run", "--iut", "bogus")
    started["guest-fault-absent"] = cli("conformance", "run", "--role", "guest", "--iut", "faulty:nope")
    started["guest-unix-absent"] = cli("conformance", "run", "--role", "guest", "--iut", f"unix:{tmp / 'g.sock'}")
    started["faulty"] = cli("conformance", "run", "--iut", "faulty:double-fetch", "--requirement", "HV-MEM-005")
    started["selected"] = cli("conformance", "run", "--requirement", "HV-MEM-005", "--json", str(tmp / "sel.json"))
    try:
        yield started
    finally:
        for c in started.values():
            if c.proc.poll() is None:
                c.proc.kill()
            c.result()


def assert_usage_error(c: Cli, *needles: str) -> None:
    c.result()
    assert c.code == 2, (c.code, c.out, c.err)
    assert "Traceback" not in c.out + c.err
    assert "Error:" in c.err
    for needle in needles:
        assert needle in c.err, (needle, c.err)


@pytest.mark.parametrize("case", sorted(BAD_ICS))
def test_malformed_ics_is_a_usage_error_naming_file_and_key(runs: dict[str, Cli], case: str) -> None:
    assert_usage_error(runs[f"ics-{case}"], f"bad-{case}.toml", BAD_ICS[case][1])


def test_missing_ics_file(runs: dict[str, Cli]) -> None:
    assert_usage_error(runs["ics-absent"], "absent.toml", "cannot read")


def test_ics_is_validated_strictly(runs: dict[str, Cli]) -> None:
    """An ICS of a guest is not one of a hypervisor, and "yes" is not a boolean."""
    assert_usage_error(runs["ics-other-role"], "guest.toml", "implementation.role", "--role hypervisor")
    assert_usage_error(runs["ics-yes"], "yes.toml", "options.ims")


def test_timeout_must_be_positive(runs: dict[str, Cli]) -> None:
    assert_usage_error(runs["timeout-negative"], "--timeout")
    with pytest.raises(UsageError, match="--timeout"):
        run("hypervisor", "reference", timeout=0, requirements=["HV-MEM-001"])


def test_unknown_requirement_and_section(runs: dict[str, Cli]) -> None:
    assert_usage_error(runs["unknown-id"], "HV-NOPE-999")
    assert_usage_error(runs["unknown-section"], "teleportation", "known:")


def test_unreachable_iut_is_one_clear_error(runs: dict[str, Cli]) -> None:
    assert_usage_error(runs["unix-absent"], "absent.sock", "cannot connect")
    assert_usage_error(runs["exec-absent"], "no-such-hypervisor", "cannot start")


def test_every_iut_is_checked_up_front_in_both_roles(runs: dict[str, Cli]) -> None:
    """One usage error naming the IUT once, in the guest role as in the hypervisor role; never a traceback, a
    test per error, or the whole list of faults."""
    assert_usage_error(runs["exec-unparsable"], "exec:'unterminated", "No closing quotation")
    assert_usage_error(runs["bogus"], "--iut bogus: expected reference, faulty:NAME")
    assert runs["bogus"].err.count("bogus") == 1, runs["bogus"].err
    assert_usage_error(runs["guest-fault-absent"], "faulty:nope", "no faulty guest 'nope'", "--role guest")
    assert "KeyError" not in runs["guest-fault-absent"].err
    assert_usage_error(runs["guest-unix-absent"], "g.sock", "no such socket")


@pytest.mark.parametrize("role", ["hypervisor", "guest"])
def test_nothing_listening_fails_at_once(tmp_path: Path, role: str) -> None:
    """No socket file and a refused TCP connection are said at once, whatever --timeout is."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    for iut, why in (
        (f"unix:{tmp_path / 'absent.sock'}", "no such socket"),
        (f"tcp:127.0.0.1:{closed}", "connection refused"),
        ("tcp:127.0.0.1:99999", "not in 1..65535"),
        ("faulty:double-fetsh", "did you mean"),
    ):
        t0 = time.monotonic()
        with pytest.raises(UsageError) as exc:
            run(role, iut, timeout=30)  # type: ignore[arg-type]
        assert time.monotonic() - t0 < 10  # at once: far below the 30 s timeout
        assert str(exc.value).startswith(f"--iut {iut}: "), str(exc.value)
        if role == "hypervisor" or not iut.startswith("faulty"):
            assert why in str(exc.value), str(exc.value)


@pytest.mark.parametrize(
    "listen", ["tcp:127.0.0.1:99999", "tcp:127.0.0.1:http", "ftp:somewhere", f"unix:{'x' * 200}/s.sock"]
)
def test_serve_with_an_address_it_cannot_listen_on(listen: str) -> None:
    result = CliRunner().invoke(main, ["serve", "--listen", listen, "--once"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Error:" in result.output


def test_exit_codes(runs: dict[str, Cli]) -> None:
    faulty = runs["faulty"].result()
    assert faulty.code == 1, faulty.err
    assert "0 errors" in faulty.out
    assert "HV-MEM-005" in faulty.err
    selected = runs["selected"].result()
    assert selected.code == 0, selected.err
    assert "0 failed" in selected.out


# -- ICS -------------------------------------------------------------------------------------------------------------


def test_ics_without_an_option_makes_its_tests_unsupported(tmp_path: Path) -> None:
    ims_tests = option_tests("ims")
    assert ims_tests, "the suite has IMS tests"
    ics = tmp_path / "ics.toml"
    ics.write_text(ICS_WITHOUT_IMS)
    by_test = {e.test: e for e in catalogue("hypervisor")}
    ids = sorted({rid for t in ims_tests for rid in by_test[t].requirements} | {"HV-ALLOC-005"})
    report = run("hypervisor", "reference", ics=str(ics), requirements=ids)
    verdicts = {r.test: r for r in report.results}
    assert ims_tests <= set(verdicts)
    for name, r in verdicts.items():
        if name in ims_tests:
            assert r.verdict is Verdict.UNSUPPORTED, (name, r.verdict, r.message)
            assert "'ims'" in r.message
        else:
            assert r.verdict is Verdict.PASS, (name, r.verdict, r.message)
    assert report.summary.fail == 0
    assert report.summary.unsupported == len(ims_tests)
    assert report.summary.ok


@pytest.mark.parametrize("case", sorted(BAD_ICS.keys() | STRICT_ICS.keys()))
def test_load_ics_errors(tmp_path: Path, case: str) -> None:
    text, needle = BAD_ICS.get(case) or STRICT_ICS[case]
    path = tmp_path / "ics.toml"
    path.write_text(text)
    with pytest.raises(IcsError) as exc:
        load_ics(path)
    assert str(path) in str(exc.value)
    assert needle in str(exc.value)
    assert "Value error" not in str(exc.value)


def test_ics_role_must_be_the_run_role(tmp_path: Path) -> None:
    path = tmp_path / "ics.toml"
    path.write_text(GUEST_ICS)
    assert load_ics(path, "guest").implementation.role == "guest"
    with pytest.raises(IcsError, match=r"implementation\.role"):
        load_ics(path, "hypervisor")
    with pytest.raises(UsageError, match=r"implementation\.role"):
        run("hypervisor", "reference", ics=str(path), requirements=["HV-MEM-001"])
    later_minor = tmp_path / "later.toml"
    later_minor.write_text(GUEST_ICS.replace('"1.0"', '"1.7"'))
    assert load_ics(later_minor, "guest").implementation.spec_version == "1.7"


def test_ics_options_cover_the_suite() -> None:
    used = set().union(*(option_tests(o) for o in OPTION_NAMES))
    assert used, "some tests are optional"
    ics = default_ics("hypervisor")
    assert all(ics.claims(o) for o in OPTION_NAMES)
    with pytest.raises(KeyError):
        ics.claims("teleport")
    loaded = load_ics_text(ICS_WITHOUT_IMS)
    assert not loaded.claims("ims")
    assert loaded.claims("msix")


def load_ics_text(text: str) -> Ics:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "ics.toml"
        p.write_text(text)
        return load_ics(p)


# -- selection ---------------------------------------------------------------------------------------------------


def test_select_by_requirement() -> None:
    report = run("hypervisor", "reference", requirements=["HV-MEM-001", "HV-FREE-001"])
    assert report.results
    for r in report.results:
        assert {"HV-MEM-001", "HV-FREE-001"} & set(r.requirements), r.test
    expected = {e.test for e in catalogue("hypervisor") if {"HV-MEM-001", "HV-FREE-001"} & set(e.requirements)}
    assert {r.test for r in report.results} == expected


def test_select_by_section() -> None:
    report = run("hypervisor", "reference", sections=["discovery"])
    assert report.results
    for r in report.results:
        assert "discovery" in {by_id(rid).section for rid in r.requirements}, r.test
    assert report.summary.ok


def test_unknown_selection_in_process() -> None:
    with pytest.raises(UsageError, match="HV-NOPE"):
        run("hypervisor", "reference", requirements=["HV-NOPE"])
    with pytest.raises(UsageError, match="unknown section"):
        run("hypervisor", "reference", sections=["nope"])
    with pytest.raises(UsageError, match="cannot connect"):
        run("hypervisor", "tcp:127.0.0.1:1", timeout=0.3)


# -- interrupted runs ---------------------------------------------------------------------------------------------


def _start_and_wait_for(tmp_path: Path, lines: int, *more: str) -> tuple[subprocess.Popen[str], Path, Path]:
    out = tmp_path / "report.json"
    partial = out.with_suffix(".partial.jsonl")
    proc = subprocess.Popen(
        [PVMSI, "conformance", "run", "--json", str(out), *more],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) >= lines:
            return proc, out, partial
        time.sleep(0.02)
    proc.kill()
    proc.communicate()
    raise AssertionError(f"the run never streamed {lines} results")


def test_interrupted_run_keeps_the_finished_tests(tmp_path: Path) -> None:
    proc, out, partial = _start_and_wait_for(tmp_path, 5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    report = Report.model_validate_json(out.read_text())
    assert not report.complete
    assert 5 <= len(report.results) < len(catalogue("hypervisor"))
    assert all(r.verdict in (Verdict.PASS, Verdict.UNSUPPORTED) for r in report.results)  # arm64/riscv64 on vtd
    assert not partial.exists(), "the stream is removed once the report is written"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_sigterm_writes_every_report_as_ctrl_c_does(tmp_path: Path) -> None:
    """A CI cancel (SIGTERM) mid-run: the JSON, JUnit and HTML reports hold the tests that finished, the JSON
    says the run is not complete, and the exit code is 128 + 15."""
    junit, page = tmp_path / "report.xml", tmp_path / "report.html"
    proc, out, partial = _start_and_wait_for(tmp_path, 5, "--junit", str(junit), "--html", str(page))
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 128 + signal.SIGTERM, (stdout, stderr)
    assert "Traceback" not in stderr
    assert "terminated (SIGTERM)" in stderr
    report = Report.model_validate_json(out.read_text())
    assert not report.complete
    assert 5 <= len(report.results) < len(catalogue("hypervisor"))
    assert int(ET.parse(junit).getroot().get("tests", "0")) == len(report.results)
    assert "interrupted: partial results" in page.read_text()
    assert not partial.exists()


def test_killed_run_leaves_a_readable_stream(tmp_path: Path) -> None:
    proc, out, partial = _start_and_wait_for(tmp_path, 3)
    proc.kill()
    proc.communicate(timeout=WAIT)
    lines = partial.read_text().splitlines()
    assert len(lines) >= 3
    for line in lines:
        r = results.TestResult.model_validate(json.loads(line))
        assert r.verdict in (Verdict.PASS, Verdict.UNSUPPORTED)  # arm64/riscv64 tests on vtd
        assert r.requirements
    assert not out.exists(), "no half-written report"


def test_ctrl_c_inside_a_hook_is_still_an_interrupted_run() -> None:
    """A KeyboardInterrupt raised in a reporting hook (pytest calls it an internal error) must not pass for a
    complete run."""
    seen: list[str] = []

    def on_result(r: results.TestResult) -> None:
        seen.append(r.test)
        if len(seen) == 3:
            raise KeyboardInterrupt

    report = run("hypervisor", "reference", on_result=on_result)
    assert not report.complete
    assert 3 <= len(report.results) < len(catalogue("hypervisor"))
