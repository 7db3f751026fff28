"""Both suites pass against the reference on every platform (spec "Message formats"): the ICS's platform
selects the reference's IOMMU and message format, the suite's platform-dependent tests and the guest suite's
simulated hypervisor; a hypervisor served on one platform fails the format test of an ICS naming another."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pvmsi.conformance.ics import IcsError, load_ics
from pvmsi.conformance.results import Verdict
from pvmsi.conformance.runner import run
from pvmsi.spec.platforms import PLATFORM_KEYS

PVMSI = str(Path(sys.executable).with_name("pvmsi"))


def _ics(tmp_path: Path, role: str, platform: str) -> str:
    path = tmp_path / f"{role}-{platform}.toml"
    path.write_text(f'[implementation]\nname = "pvmsi-ref"\nrole = "{role}"\nplatform = "{platform}"\n')
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("role", ["hypervisor", "guest"])
@pytest.mark.parametrize("platform", PLATFORM_KEYS)
def test_reference_passes_on_every_platform(tmp_path: Path, role: str, platform: str) -> None:
    report = run(role, "reference", ics=_ics(tmp_path, role, platform))  # type: ignore[arg-type]
    bad = [(r.test, r.verdict.value, r.message[:200]) for r in report.results if r.verdict is not Verdict.PASS]
    assert all(v == "unsupported" for _, v, _ in bad), bad
    assert report.summary.ok
    fmt = [r for r in report.results if r.test.startswith("test_formats::")]
    assert fmt, "the format tests ran"
    assert any(r.verdict is Verdict.PASS for r in fmt)


def test_platform_tests_are_unsupported_elsewhere(tmp_path: Path) -> None:
    report = run("hypervisor", "reference", ics=_ics(tmp_path, "hypervisor", "vtd"), sections=["formats"])
    verdicts = {r.test.split("::")[1]: r.verdict for r in report.results}
    assert verdicts["test_pairs_follow_the_platform_format"] is Verdict.PASS
    assert verdicts["test_imsic_retarget_to_another_hart_rewrites"] is Verdict.UNSUPPORTED
    assert verdicts["test_its_doorbell_is_a_mapped_iova"] is Verdict.UNSUPPORTED


def test_a_hypervisor_on_another_platform_fails_the_format_test(tmp_path: Path) -> None:
    """The reference served on gic-its against an ICS that says imsic: HV-FMT-001 fails."""
    iut = f"exec:{PVMSI} serve --stdio --platform gic-its"
    report = run("hypervisor", iut, ics=_ics(tmp_path, "hypervisor", "imsic"), requirements=["HV-FMT-001"])
    failed = [r for r in report.results if r.verdict is Verdict.FAIL]
    assert failed
    assert failed[0].message.startswith("HV-FMT-001 ")


def test_ics_platform_is_checked(tmp_path: Path) -> None:
    assert load_ics(_ics(tmp_path, "guest", "imsic")).implementation.platform == "imsic"
    bad = tmp_path / "bad.toml"
    bad.write_text('[implementation]\nname = "x"\nrole = "guest"\nplatform = "ppc"\n')
    with pytest.raises(IcsError, match="platform"):
        load_ics(bad)
