"""The implementation conformance statement (ICS): what an implementation claims, in TOML.

As in ISO/IEC 9646, every optional item is named; a test of an option the ICS does not claim is reported
``unsupported``, never ``fail``. The file is validated strictly (docs/conformance-guide.md, "The implementation
conformance statement"): TOML booleans only (never ``"yes"`` or ``"off"``), a ``role`` that is the role of the
run, and a ``spec_version`` of the major version this suite checks (spec "Versioning and extension": a minor
version only adds).  Example::

    [implementation]
    name = "my-hypervisor"
    version = "6.19-rc1"
    role = "hypervisor"
    spec_version = "1.0"
    platform = "vtd"

    [options]
    msi = true
    msix = true
    ims = false
    subdevice = false
    posted = false
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..spec.platforms import DEFAULT_PLATFORM, PlatformKey
from ..spec.version import VERSION_MAJOR, VERSION_MINOR

Role = Literal["hypervisor", "guest"]


class Implementation(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1)
    version: str = ""
    role: Role
    spec_version: str = Field(f"{VERSION_MAJOR}.{VERSION_MINOR}", pattern=r"^\d+\.\d+$")
    #: The platform the implementation runs on (spec "Message formats"): a hypervisor's IOMMU and message format,
    #: and so its architecture (vtd and amd-vi: x86_64, gic-its: arm64, imsic: riscv64); for a guest, the
    #: platform the suite's simulated hypervisor serves it.  Platform-dependent tests check this one.
    platform: PlatformKey = DEFAULT_PLATFORM

    @field_validator("spec_version")
    @classmethod
    def _checked_major(cls, value: str) -> str:
        """A 1.x implementation does everything 1.0 requires (a minor version only adds); another major is not
        what this suite checks."""
        major = int(value.split(".", 1)[0])
        if major != VERSION_MAJOR:
            raise ValueError(
                f"this suite checks pvmsi {VERSION_MAJOR}.{VERSION_MINOR}; an implementation of {value} "
                f"cannot be checked by it (a {VERSION_MAJOR}.x version is)"
            )
        return value


class Options(BaseModel):
    """Optional features; each matches a pvmsi feature bit or an optional behaviour."""

    model_config = ConfigDict(extra="forbid", strict=True)

    msi: bool = Field(True, description="Multi-message MSI (feature MSI).")
    msix: bool = Field(True, description="MSI-X (feature MSIX).")
    ims: bool = Field(True, description="IMS (feature IMS).")
    subdevice: bool = Field(True, description="Sub-devices with PASID (feature SUBDEVICE).")
    posted: bool = Field(True, description="Posted delivery flag (feature POSTED).")
    hot_unplug: bool = Field(True, description="The harness can hot-unplug a device.")
    flr: bool = Field(True, description="The harness can make a device go through FLR.")


class Ics(BaseModel):
    """A whole ICS file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    implementation: Implementation
    options: Options = Options()

    def claims(self, option: str) -> bool:
        value = getattr(self.options, option, None)
        if value is None:
            raise KeyError(f"unknown ICS option {option!r}")
        return bool(value)


OPTION_NAMES: tuple[str, ...] = tuple(Options.model_fields)


class IcsError(ValueError):
    """An ICS file that cannot be used; the message names the file and the offending key."""


def load_ics(path: str | Path, role: Role | None = None) -> Ics:
    """The ICS in ``path``, validated strictly; with ``role``, it must be the ICS of an implementation of that role
    (an ICS of a guest says nothing about a hypervisor)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise IcsError(f"{p}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise IcsError(f"{p}: not UTF-8 text: {e.reason} at byte {e.start}") from None
    except tomllib.TOMLDecodeError as e:
        raise IcsError(f"{p}: not valid TOML: {e}") from None
    try:
        ics = Ics.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg'].removeprefix('Value error, ')}" for err in e.errors()
        )
        raise IcsError(f"{p}: {problems}") from None
    if role is not None and ics.implementation.role != role:
        raise IcsError(
            f"{p}: implementation.role: the ICS is a {ics.implementation.role}'s, the run checks a {role} "
            f"(--role {role})"
        )
    return ics


def default_ics(role: Role) -> Ics:
    """The reference implementation's ICS: every option claimed."""
    return Ics(implementation=Implementation(name="pvmsi-ref", role=role))
