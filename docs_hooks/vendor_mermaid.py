"""Vendor the diagram renderer the spec site ships: a pinned mermaid.min.js from the npm registry, into docs/.

The site draws its state machines and sequence diagrams with Mermaid. Material for MkDocs (and Zensical) would
load it from a CDN, so a reader offline or behind a firewall would see the diagrams' source; the site ships the
script instead (``extra_javascript`` in mkdocs.yml), and the theme uses the ``mermaid`` it finds loaded.

Reproduce (needs npm and the registry; the result is committed):

    python docs_hooks/vendor_mermaid.py          # fetch MERMAID_VERSION, check it, write docs/javascripts/
    python docs_hooks/vendor_mermaid.py --check  # the committed files are that release's (no network)

The package's tarball is checked against its registry integrity (pinned here), the script against its SHA-256.
To move to another release, change MERMAID_VERSION, run it with ``--pin`` to print the new hashes, review, pin.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: Material for MkDocs 9.x loads mermaid@11 from its CDN: the latest 11.x release, pinned.
MERMAID_VERSION = "11.17.2"
#: The registry's ``dist.integrity`` of mermaid-MERMAID_VERSION.tgz.
TARBALL_INTEGRITY = "sha512-V6K3C8EBdEsPFZXSKMJe6ppQOENxuHARr9GvHX4hh47lAbhMRD9qf4oEK7LoaRQxULMa80/qt5gHO73aCleBBg=="
#: SHA-256 of package/dist/mermaid.min.js in that tarball.
SCRIPT_SHA256 = "581ed7d74bd9048d0e3a91363927d72ef22942d7722546b27f7cc29e35390eb8"

DEST = Path(__file__).resolve().parent.parent / "docs" / "javascripts"
SCRIPT = DEST / "mermaid.min.js"
LICENSE = DEST / "mermaid.LICENSE.txt"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch(pin: bool = False) -> None:
    """Download the pinned release with ``npm pack``, check it, and write the script and its license."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", f"mermaid@{MERMAID_VERSION}", "--pack-destination", tmp, "--silent"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tarball = Path(tmp) / f"mermaid-{MERMAID_VERSION}.tgz"
        if pin:
            print(f"TARBALL_INTEGRITY = {integrity(tarball)!r}")
        elif integrity(tarball) != TARBALL_INTEGRITY:
            raise SystemExit(f"{tarball.name}: integrity {integrity(tarball)} is not the pinned {TARBALL_INTEGRITY}")
        with tarfile.open(tarball) as tar:
            script, license_ = tar.extractfile("package/dist/mermaid.min.js"), tar.extractfile("package/LICENSE")
            if script is None or license_ is None:
                raise SystemExit(f"{tarball.name} has no package/dist/mermaid.min.js or package/LICENSE")
            script_bytes, license_bytes = script.read(), license_.read()
    if pin:
        print(f"SCRIPT_SHA256 = {hashlib.sha256(script_bytes).hexdigest()!r}")
        return
    if hashlib.sha256(script_bytes).hexdigest() != SCRIPT_SHA256:
        raise SystemExit("mermaid.min.js: SHA-256 is not the pinned one")
    DEST.mkdir(parents=True, exist_ok=True)
    SCRIPT.write_bytes(script_bytes)
    LICENSE.write_bytes(license_bytes)
    print(f"wrote {SCRIPT} (mermaid {MERMAID_VERSION}) and {LICENSE}")


def check() -> list[str]:
    """What is wrong with the committed files (empty when they are the pinned release's)."""
    if not SCRIPT.is_file() or not LICENSE.is_file():
        return [f"{SCRIPT} or {LICENSE} missing: run python docs_hooks/vendor_mermaid.py"]
    if sha256(SCRIPT) != SCRIPT_SHA256:
        return [f"{SCRIPT} is not mermaid {MERMAID_VERSION}'s: run python docs_hooks/vendor_mermaid.py"]
    return []


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        problems = check()
        print("\n".join(problems) or f"mermaid {MERMAID_VERSION}: ok")
        raise SystemExit(1 if problems else 0)
    fetch(pin="--pin" in sys.argv[1:])
