"""Packaging: one import name and no symlinks; the wheel holds every run-time file and the sdist everything to
build the site and run the tests (pyproject.toml's package-dir, setup.py, MANIFEST.in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from paths import ROOT
from typecheck import package_dir


def _tracked() -> list[str]:
    """The files git tracks (an unpacked sdist has no git: these checks are about the checkout it came from)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist): nothing to compare the artifacts with")
    out = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line.split("\t", 1)[1] for line in out.splitlines()]


def test_no_symlinks_in_the_tree() -> None:
    """No file of the project is a link (git's mode 120000), in the index or in the work tree."""
    tracked = _tracked()
    out = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert [line for line in out.splitlines() if line.startswith("120000")] == []
    assert [f for f in tracked if (ROOT / f).is_symlink()] == []


@pytest.mark.parametrize("bare", ["spec", "reference", "conformance"])
def test_folders_are_not_importable_by_their_bare_names(bare: str) -> None:
    """From a checkout's root (on sys.path), ``import spec`` is refused instead of making a second module tree."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {bare}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert f"ImportError: '{bare}' is the folder of pvmsi.{bare}" in proc.stderr


def test_mapped_folders_are_the_installed_packages() -> None:
    """pvmsi.spec, .reference and .conformance are the mapped folders (an editable install) or their copies inside
    the installed pvmsi package (a wheel), and nothing is imported under a bare folder name."""
    import pvmsi
    import pvmsi.conformance.runner
    import pvmsi.reference.system
    import pvmsi.spec.codec

    installed = Path(pvmsi.__file__ or "").resolve().parent
    for module, folder in [
        (pvmsi.spec.codec, "spec"),
        (pvmsi.reference.system, "reference"),
        (pvmsi.conformance.runner, "conformance"),
    ]:
        where = Path(module.__file__ or "").resolve().parent
        assert where in (package_dir()[f"pvmsi.{folder}"], installed / folder), where
    assert not {"spec", "reference", "conformance"} & set(sys.modules)


def _build(kind: str, out: Path) -> Path:
    """``python -m build --wheel`` or ``--sdist`` (pypa build, in an isolated build environment)."""
    subprocess.run(
        [sys.executable, "-m", "build", f"--{kind}", "--outdir", str(out), str(ROOT)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    [artifact] = out.glob("pvmsi-*.whl" if kind == "wheel" else "pvmsi-*.tar.gz")
    return artifact


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build("wheel", tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel alone installed into a folder (no dependencies: the venv's serve), for PYTHONPATH."""
    site = tmp_path_factory.mktemp("installed")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    return site


@pytest.mark.slow
def test_wheel_holds_every_run_time_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [n for n in names if n.split("/")[0] in {"spec", "reference", "conformance", "tests", "docs"}]
    for folder, package in [
        ("spec", "pvmsi/spec"),
        ("reference", "pvmsi/reference"),
        ("conformance", "pvmsi/conformance"),
    ]:
        wanted = {
            package + f.removeprefix(folder)
            for f in _tracked()
            if f.startswith(folder + "/") and not f.endswith((".pyc",))
        }
        assert wanted <= names, sorted(wanted - names)[:10]
    assert "pvmsi/conformance/pytest.ini" in names
    assert any(n.startswith("pvmsi/conformance/vectors/scenarios/") for n in names)


@pytest.mark.slow
def test_the_suite_runs_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    """Installed from the wheel alone (outside the checkout): run, list, vectors and check-faults work."""
    site = installed
    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "work"
    work.mkdir()

    def pvmsi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pvmsi", *args], cwd=work, env=env, capture_output=True, text=True, check=False
        )

    where = subprocess.run(
        [sys.executable, "-c", "import pvmsi.conformance.plugin as p; print(p.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(site), where
    run = pvmsi("conformance", "run", "--role", "hypervisor", "--iut", "reference", "--json", "out.json")
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((work / "out.json").read_text())["summary"]
    assert summary["pass"] > 0
    assert summary["fail"] == summary["error"] == 0
    listed = pvmsi("conformance", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {t["role"] for t in json.loads(listed.stdout)} == {"hypervisor", "guest"}
    vectors = pvmsi("conformance", "vectors", "-o", "vec")
    assert vectors.returncode == 0, vectors.stdout + vectors.stderr
    assert any((work / "vec" / "scenarios").glob("*.json"))
    faults = pvmsi("conformance", "check-faults")
    assert faults.returncode == 0, faults.stdout + faults.stderr
    assert " 0 missed" in faults.stdout


@pytest.mark.slow
def test_sdist_holds_the_site_and_the_tests(tmp_path: Path) -> None:
    sdist = _build("sdist", tmp_path)
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = {f for f in _tracked() if not f.startswith((".gitignore",))}
    assert wanted <= names, sorted(wanted - names)[:10]


@pytest.mark.slow
def test_the_site_is_written_by_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    """``pvmsi gen docs`` from the wheel alone expands the checkout's pages (the path Zensical builds from)."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "pvmsi", "gen", "docs", "-f", str(ROOT / "mkdocs.yml"), "-o", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    pages = sorted((out / "docs").rglob("*.md"))
    assert len(pages) == len(list((ROOT / "docs").rglob("*.md")))
    assert not [p for p in pages if "{{pvmsi" in p.read_text(encoding="utf-8")]
