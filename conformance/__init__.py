"""pvmsi.conformance: the harness protocol, the suites for both roles, ICS, reports and test vectors."""

# This folder is installed as pvmsi.conformance (pyproject.toml, [tool.setuptools] package-dir); imported as a bare
# `conformance` (a checkout's root on sys.path) it would be a second module tree with classes of its own.
if __name__ != "pvmsi.conformance":
    raise ImportError(
        f"{__name__!r} is the folder of pvmsi.conformance: install the project and import pvmsi.conformance"
    )
