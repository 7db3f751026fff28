"""`pvmsi spec dump`: the summary runs; bad usage is a usage error (exit 2), never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pvmsi.cli import main
from pvmsi.spec.calls import CALLS
from pvmsi.spec.layout import all_layouts


def test_summary_runs() -> None:
    result = CliRunner().invoke(main, ["spec", "dump"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "pvmsi 1.0" in result.output
    for c in CALLS:
        assert c.name in result.output
    assert "requirements" in result.output


def test_summary_lists_every_format() -> None:
    result = CliRunner().invoke(main, ["spec", "dump"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for lay in all_layouts():
        assert lay.c_name in result.output


@pytest.mark.parametrize("args", [["--help"], ["spec", "--help"], ["spec", "dump", "--help"], ["--version"]])
def test_help_and_version(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip()


@pytest.mark.parametrize(
    "args",
    [
        ["spec", "dump", "--bogus"],
        ["spec", "dump", "--json=yes"],
        ["spec", "dump", "extra"],
        ["spec", "nosuch"],
        ["nosuch"],
        ["spec", "dump", "-x"],
    ],
    ids=["unknown-option", "flag-with-value", "extra-argument", "unknown-subcommand", "unknown-command", "short"],
)
def test_bad_usage_is_usage_error(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_bad_usage_via_console_script() -> None:
    exe = Path(sys.executable).with_name("pvmsi")
    proc = subprocess.run(
        [str(exe), "spec", "dump", "--bogus"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 2
    assert "Usage:" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_summary_via_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pvmsi", "spec", "dump"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "pvmsi 1.0" in proc.stdout
