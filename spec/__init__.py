"""pvmsi.spec: the normative definitions of pvmsi 1.0 (formats, constants, calls, requirements)."""

from .version import SPEC_NAME, VERSION_MAJOR, VERSION_MINOR

# This folder is installed as pvmsi.spec (pyproject.toml, [tool.setuptools] package-dir); imported as a bare
# `spec` (a checkout's root on sys.path) it would be a second module tree with classes of its own.
if __name__ != "pvmsi.spec":
    raise ImportError(f"{__name__!r} is the folder of pvmsi.spec: install the project and import pvmsi.spec")

__all__ = ["SPEC_NAME", "VERSION_MAJOR", "VERSION_MINOR"]
