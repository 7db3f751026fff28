"""The test devices' configuration space as the guest sees it (harness CONFIG_READ), against the harness device
model and what DEVICE_QUERY reports (spec "Device control", HV-DEV-004)."""

from __future__ import annotations

import pytest

from pvmsi.conformance.toolkit import DEFAULT_DEVICES, Session, check
from pvmsi.spec import harness_devices as hd

requirement = pytest.mark.requirement


def _word(raw: bytes, at: int, size: int) -> int:
    return int.from_bytes(raw[at : at + size], "little")


def capabilities(raw: bytes) -> list[tuple[int, int]]:
    """The capability list of a configuration space image, as ``(offset, capability id)`` in list order."""
    out: list[tuple[int, int]] = []
    at = raw[hd.CAP_POINTER] if _word(raw, hd.STATUS, 2) & hd.STATUS_CAP_LIST else 0
    while at and len(out) < 48 and at + 2 <= len(raw):
        out.append((at, raw[at]))
        at = raw[at + 1]
    return out


@requirement("HV-DEV-004")
def test_capabilities_are_where_the_device_model_puts_them_and_query_agrees(session: Session) -> None:
    """Each test device's capability list (read with CONFIG_READ) is the harness device model's, the MSI and
    MSI-X Message Control show its vectors and table size, and DEVICE_QUERY reports the same counts."""
    session.negotiated()
    for slot in DEFAULT_DEVICES:
        model = hd.DEVICES[slot.profile]
        raw = session.config_read(slot.device, 0, 256)
        ident = (_word(raw, 0, 2), _word(raw, 2, 2))
        check(
            ident == (model.vendor_id, model.device_id),
            "HV-DEV-004",
            f"{model.name}: vendor and device id {model.vendor_id:#06x}:{model.device_id:#06x}",
            f"{ident[0]:#06x}:{ident[1]:#06x}",
        )
        caps = capabilities(raw)
        check(
            caps == list(model.capabilities),
            "HV-DEV-004",
            f"{model.name}: capabilities {[(hex(o), hex(c)) for o, c in model.capabilities]}",
            str([(hex(o), hex(c)) for o, c in caps]),
        )
        info = session.device_info(slot.device)
        msi_vectors = 0
        if model.msi_vectors:
            control = _word(raw, hd.MSI_CAP_OFFSET + hd.MSI_CONTROL, 2)
            msi_vectors = 1 << (control >> hd.MSI_MMC_SHIFT & 7)
            per_vector = bool(control & hd.MSI_PER_VECTOR_MASK)
            check(
                bool(control & hd.MSI_64BIT) and per_vector == model.msi_per_vector_mask,
                "HV-DEV-004",
                f"{model.name}: 64-bit MSI, per-vector masking {model.msi_per_vector_mask}",
                hex(control),
            )
        msix_size = 0
        if model.msix_table_size:
            control = _word(raw, hd.MSIX_CAP_OFFSET + hd.MSIX_CONTROL, 2)
            msix_size = (control & hd.MSIX_TABLE_SIZE_MASK) + 1
            table = _word(raw, hd.MSIX_CAP_OFFSET + hd.MSIX_TABLE, 4)
            check(
                table == model.bar()["msix_table"][0],
                "HV-DEV-004",
                f"{model.name}: MSI-X table at BAR0 + {model.bar()['msix_table'][0]:#x} (BIR 0)",
                hex(table),
            )
        check(
            (msi_vectors, msix_size) == (model.msi_vectors, model.msix_table_size),
            "HV-DEV-004",
            f"{model.name}: configuration space shows {model.msi_vectors} MSI vectors, {model.msix_table_size} "
            "MSI-X entries",
            f"{msi_vectors}, {msix_size}",
        )
        check(
            (info.msi_max_vectors, info.msix_table_size) == (msi_vectors, msix_size),
            "HV-DEV-004",
            f"{model.name}: DEVICE_QUERY reports what configuration space shows ({msi_vectors}, {msix_size})",
            f"{info.msi_max_vectors}, {info.msix_table_size}",
        )
