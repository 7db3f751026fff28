"""The C kit (conformance/c/, written by `pvmsi gen c-kit`): a harness library and an example hypervisor IUT on
it, for implementers without Python. Built with gcc and clang at the strict warning set against the generated
header, the example must pass the hypervisor suite's `discovery` and `negotiation` sections: every test passes,
or is unsupported where it needs a device or message call the example does not serve; none fails or errs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ctoolchain import compile_c, need, run
from paths import ROOT

from pvmsi.cli.gen_cmd import KIT_FILES
from pvmsi.conformance.connect import open_hypervisor
from pvmsi.conformance.runner import run as run_suite
from pvmsi.gen.c_header import c_header
from pvmsi.reference.backend import ReferenceHypervisor
from pvmsi.spec.harness_constants import HARNESS_CONFIG_SPACE_SIZE, DeviceProfile
from pvmsi.spec.iut import DeviceRef, DeviceSlot

KIT = ROOT / "conformance" / "c"
SOURCES = ("pvmsi_harness.c", "example_hv.c")
#: Tests the example must pass (the rest of the two sections need device calls: unsupported).
MUST_PASS = {
    "test_discovery::test_x86_cpuid_leaf_block",
    "test_discovery::test_version_in_every_state",
    "test_discovery::test_get_info_in_every_state",
    "test_abi::test_x86_cpuid_names_the_native_path",
    "test_negotiation::test_version_mismatch",
    "test_negotiation::test_unoffered_bits_are_refused_and_reported",
    "test_negotiation::test_no_message_kind_is_invalid",
    "test_negotiation::test_missing_required_feature_is_refused_visibly",
}


def build(compiler: str, d: Path) -> Path:
    """The example IUT as `pvmsi gen c-kit` writes it, compiled by ``compiler`` (-std=c11, the strict warning
    set)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pvmsi", "gen", "c-kit", "-o", str(d)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert (d / "pvmsi.h").read_text(encoding="ascii") == c_header("stdint")
    for name in KIT_FILES:
        assert (d / name).read_bytes() == (KIT / name).read_bytes()
    objects = [compile_c(compiler, d / src, d / src.replace(".c", ".o"), "-std=c11", "-O2") for src in SOURCES]
    exe = d / "example_hv"
    run([need(compiler), *objects, "-o", exe])
    return exe


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_the_example_iut_passes_discovery_and_negotiation(compiler: str, tmp_path: Path) -> None:
    exe = build(compiler, tmp_path)
    report = run_suite("hypervisor", f"exec:{exe}", timeout=10, sections=["discovery", "negotiation"])
    verdicts = {r.test: r.verdict.value for r in report.results}
    bad = {
        r.test: (r.verdict.value, r.message) for r in report.results if r.verdict.value not in ("pass", "unsupported")
    }
    assert not bad, bad
    assert {t for t, v in verdicts.items() if v == "pass"} >= MUST_PASS, verdicts


def test_the_examples_configuration_space_is_the_device_models(tmp_path: Path) -> None:
    """CONFIG_READ of the example (built from the header's PVMSI_HDEV_* numbers) returns, byte for byte, what the
    reference returns for each profile after reset: the C header carries the whole device model."""
    exe = build("gcc", tmp_path)
    slots = [DeviceSlot(p, DeviceRef(0, 0, 8 * (i + 1))) for i, p in enumerate(DeviceProfile)]
    example = open_hypervisor(f"exec:{exe}", timeout=10)
    reference = ReferenceHypervisor()
    try:
        vms = [iut.create_vm(1, 16, slots) for iut in (example, reference)]
        for slot in slots:
            got = example.config_read(vms[0], slot.device, 0, HARNESS_CONFIG_SPACE_SIZE)
            want = reference.config_read(vms[1], slot.device, 0, HARNESS_CONFIG_SPACE_SIZE)
            assert got == want, slot.profile.name
        idxd = slots[[s.profile for s in slots].index(DeviceProfile.IDXD)].device
        assert example.config_read(vms[0], idxd.with_pasid(1), 0, 64) == reference.config_read(
            vms[1], idxd.with_pasid(1), 0, 64
        )
    finally:
        example.close()
