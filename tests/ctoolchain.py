"""Running real C compilers from the tests: find a tool or skip/fail, compile, run.

A missing tool skips the test with the reason locally, but fails it when ``CI`` is set: CI installs every
tool through .ci/install-toolchains, so a missing one there is a broken environment, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

WARN = ["-Wall", "-Wextra", "-Werror", "-pedantic", "-Wpadded"]
C_STDS = ["c90", "c99", "c11"]
TIMEOUT = 60


def need(tool: str, *, in_ci: bool = True) -> str:
    """The path of ``tool``; skips (locally) or fails (CI) when it is not installed.

    ``in_ci=False`` is for a tool CI is not provisioned with (rustc): a missing one always skips, with the reason.
    """
    path = shutil.which(tool)
    if path is not None:
        return path
    if not in_ci:
        pytest.skip(f"{tool} is not installed (optional; .ci/install-toolchains does not provide it)")
    reason = f"{tool} is not installed (.ci/install-toolchains installs it from Debian packages)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


def run(cmd: Sequence[str | Path], cwd: Path | None = None) -> str:
    """Run ``cmd``; on failure fail the test with the command and its output. Returns stdout."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if proc.returncode != 0:
        pytest.fail(f"$ {' '.join(map(str, cmd))}\n(exit {proc.returncode})\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def compile_c(compiler: str, src: Path, out: Path, *flags: str, link: bool = False) -> Path:
    """Compile ``src`` (``-c`` unless ``link``) with the strict warning set and ``flags``."""
    cc = need(compiler)
    run([cc, *WARN, *flags, *([] if link else ["-c"]), "-I", src.parent, src, "-o", out])
    return out
