"""pvmsi.reference: the simulated platform, the reference hypervisor and the reference guest."""

# This folder is installed as pvmsi.reference (pyproject.toml, [tool.setuptools] package-dir); imported as a bare
# `reference` (a checkout's root on sys.path) it would be a second module tree with classes of its own.
if __name__ != "pvmsi.reference":
    raise ImportError(f"{__name__!r} is the folder of pvmsi.reference: install the project and import pvmsi.reference")
