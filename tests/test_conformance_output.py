"""What a person sees of ``pvmsi`` in a terminal: the progress bar moves and the tests that did not pass show while
the run goes on, a failure is its requirement with expected and actual (``-v`` for the transcript), and no help
listing or table is cut short with "..."."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pvmsi.cli.main import main

PVMSI = str(Path(sys.executable).with_name("pvmsi"))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
FAILING = ["conformance", "run", "--iut", "faulty:double-fetch-retarget", "--requirement", "HV-MEM-005"]


def in_a_terminal(args: list[str], columns: int = 100, wait: float = 60.0) -> tuple[int, str]:
    """Run ``pvmsi ARGS`` on a pseudo-terminal of ``columns`` columns: its exit code and everything it wrote,
    control sequences taken out."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES", "TERM")}
    proc = subprocess.Popen([PVMSI, *args], stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm"})
    os.close(slave)
    out = b""
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        code = proc.wait(timeout=10)
    return code, ANSI.sub("", out.decode(errors="replace")).replace("\r", "\n")


def test_the_progress_bar_moves_and_failures_show_as_they_come() -> None:
    """Live lines reach the terminal although the run sends sys.stderr elsewhere while pytest runs."""
    code, screen = in_a_terminal([*FAILING[:4], "--section", "memory"])
    assert code == 1, screen
    live = screen.index("FAIL        test_memory::test_each_input_byte_read_once (HV-MEM-005")
    closing = screen.index("FAIL test_memory::test_each_input_byte_read_once")
    assert live < closing
    counts = [(int(a), int(b)) for a, b in re.findall(r"hypervisor suite.*?(\d+)/(\d+)", screen)]
    assert counts, screen
    total = counts[0][1]
    assert total > 1
    assert (total, total) in counts or any(0 < done < total for done, _ in counts), counts


def test_a_failure_is_its_requirement_expected_and_actual() -> None:
    """Without -v: the requirement, expected and actual, the last call with long bytes cut, and where the rest
    is; a few lines, not hundreds of hex. With -v: the whole transcript, bytes in full."""
    short = CliRunner().invoke(main, FAILING)
    assert short.exit_code == 1, short.output
    lines = short.output.splitlines()
    assert len(lines) < 40, short.output
    assert "HV-MEM-005 (MUST, hypervisor)" in short.output
    assert "expected:" in short.output
    assert "actual:" in short.output
    assert "-v prints them all" in short.output
    assert not re.search(r"[0-9a-f]{80}", short.output.replace("\n", "")), short.output
    full = CliRunner().invoke(main, [*FAILING, "-v"])
    assert full.exit_code == 1
    assert len(full.output.splitlines()) > len(lines)
    assert re.search(r"[0-9a-f]{200}", re.sub(r"\s", "", full.output))
    assert "-v prints them all" not in full.output


def _groups(group: click.Group, path: list[str]) -> list[list[str]]:
    found = [path]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            found += _groups(cmd, [*path, name])
    return found


@pytest.mark.parametrize("path", _groups(main, []), ids=lambda p: " ".join(p) or "pvmsi")
def test_no_help_listing_is_cut_short(path: list[str]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    listing = result.output.split("Commands:", 1)[1]
    assert "..." not in listing, listing


def test_help_names_every_generator_and_option() -> None:
    gen = CliRunner().invoke(main, ["gen", "--help"]).output
    assert "Rust" in gen.split("Options:")[0], gen
    replay = CliRunner().invoke(main, ["conformance", "replay", "--help"]).output
    timeout_help = replay.split("--timeout", 1)[1].split("\n  -", 1)[0]
    assert "Seconds to wait" in timeout_help, replay
    run = CliRunner().invoke(main, ["conformance", "run", "--help"]).output
    assert "--deadline" in run


@pytest.mark.parametrize("command", [["conformance", "faults"], ["conformance", "list"], ["spec", "dump"]])
def test_no_table_is_cut_short(command: list[str]) -> None:
    code, screen = in_a_terminal(command, columns=60)
    assert code == 0, screen
    assert "…" not in screen, screen


def test_an_unknown_fault_is_one_short_message() -> None:
    result = CliRunner().invoke(main, ["conformance", "run", "--iut", "faulty:double-fetsh"])
    assert result.exit_code == 2
    error = next(line for line in result.output.splitlines() if line.startswith("Error:"))
    assert "did you mean double-fetch " in error  # the closest name first, then the others
    assert len(error) < 240, error  # one line: at most three names suggested
