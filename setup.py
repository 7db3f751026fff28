"""The packages of each folder that pyproject.toml's ``[tool.setuptools] package-dir`` maps into ``pvmsi``.

Metadata and the mapping itself live in pyproject.toml; setuptools needs every subpackage named, and a mapped
folder's subpackages (``spec/formats`` -> ``pvmsi.spec.formats``) are found here rather than listed by hand.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
PACKAGE_DIR: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]

setup(
    packages=[
        f"{package}.{sub}" if sub else package
        for package, folder in PACKAGE_DIR.items()
        for sub in ["", *find_packages(str(ROOT / folder))]
    ]
)
