"""The implementation conformance statement (ICS): what an implementation claims, in TOML.

As in ISO/IEC 9646, every optional item is named; a test of an option the ICS does not claim is reported
``unsupported``, never ``fail``.  Example::

    [implementation]
    name = "my-hypervisor"
    version = "6.19-rc1"
    role = "hypervisor"
    spec_version = "1.0"

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

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Implementation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    version: str = ""
    role: Literal["hypervisor", "guest"]
    spec_version: str = Field("1.0", pattern=r"^\d+\.\d+$")


class Options(BaseModel):
    """Optional features; each matches a pvmsi feature bit or an optional behaviour."""

    model_config = ConfigDict(extra="forbid")

    msi: bool = Field(True, description="Multi-message MSI (feature MSI).")
    msix: bool = Field(True, description="MSI-X (feature MSIX).")
    ims: bool = Field(True, description="IMS (feature IMS).")
    subdevice: bool = Field(True, description="Sub-devices with PASID (feature SUBDEVICE).")
    posted: bool = Field(True, description="Posted delivery flag (feature POSTED).")
    hot_unplug: bool = Field(True, description="The harness can hot-unplug a device.")
    flr: bool = Field(True, description="The harness can make a device go through FLR.")


class Ics(BaseModel):
    """A whole ICS file."""

    model_config = ConfigDict(extra="forbid")

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


def load_ics(path: str | Path) -> Ics:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise IcsError(f"{p}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise IcsError(f"{p}: not valid TOML: {e}") from None
    try:
        return Ics.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise IcsError(f"{p}: {problems}") from None


def default_ics(role: Literal["hypervisor", "guest"]) -> Ics:
    """The reference implementation's ICS: every option claimed."""
    return Ics(implementation=Implementation(name="pvmsi-ref", role=role))
