"""The harness device model's tables (spec appendix "Conformance harness protocol", "Device model"), generated
from :mod:`pvmsi.spec.harness_devices`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pvmsi.spec import harness_devices as hd

from .context import DocsError
from .markup import code, hx, md_text, table


def _registers(regs: Sequence[hd.Register]) -> str:
    return table(
        ["offset", "size", "register", "after reset", "notes"],
        [[hx(r.offset, 2), str(r.size), r.name, md_text(r.reset), md_text(r.doc)] for r in regs],
    )


def _bits(bits: Sequence[hd.BitField]) -> str:
    return table(
        ["bits", "field", "access", "meaning"],
        [[str(b.low) if b.low == b.high else f"{b.high}:{b.low}", b.name, b.access, md_text(b.doc)] for b in bits],
    )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _profiles() -> str:
    rows = []
    for d in hd.DEVICES.values():
        caps = ", ".join(f"{'MSI' if cid == hd.MSI_CAP_ID else 'MSI-X'} at {hx(at, 2)}" for at, cid in d.capabilities)
        rows.append(
            [
                code(f"PVMSI_HPROFILE_{d.profile.name}"),
                d.name,
                f"{hx(d.vendor_id, 4)}:{hx(d.device_id, 4)}",
                caps or "none",
                str(d.msi_vectors) + (" (per-vector masking)" if d.msi_vectors and d.msi_per_vector_mask else ""),
                str(d.msix_table_size),
                str(d.ims_slots),
                f"{d.subdevices} × {d.subdevice_slots} IMS slots" if d.subdevices else "none",
                str(d.ims_store),
                _yes(d.ims_pasid),
            ]
        )
    return table(
        [
            "profile",
            "name",
            "vendor:device",
            "capabilities",
            "MSI vectors",
            "MSI-X entries",
            "IMS slots the function's own messages use (DEVICE_QUERY ims_slots)",
            "sub-devices (ids 1..N)",
            "IMS store: slots the function's identity addresses",
            "PASID in IMS slots",
        ],
        rows,
    )


def _bar() -> str:
    rows = []
    for d in hd.DEVICES.values():
        r = d.bar()
        cells = [d.name, hx(r["bar"][1])]
        for key in ("msix_table", "msix_pba", "ims"):
            at, size = r[key]
            cells.append(f"{hx(at)} ({size} bytes)" if size else "none")
        rows.append(cells)
    return table(["profile", "BAR0 size", "MSI-X table", "MSI-X PBA", "IMS store"], rows)


def _ram() -> str:
    return table(
        ["guest-physical range", "what"],
        [
            [f"{hx(0)} .. {hx(hd.GUEST_LOW_RAM_LIMIT)}", "RAM: the first vm_config.ram_mib MiB, up to 3 GiB"],
            [
                f"{hx(hd.GUEST_INTERRUPT_WINDOW)} .. {hx(hd.GUEST_INTERRUPT_WINDOW + hd.GUEST_INTERRUPT_WINDOW_SIZE)}",
                "the interrupt address window: never RAM (MEM_READ and MEM_WRITE there are BAD_ADDRESS)",
            ],
            [f"from {hx(hd.GUEST_HIGH_RAM_BASE)}", "RAM: what ram_mib holds beyond 3 GiB, contiguous"],
            [f"from {hx(hd.GUEST_MMIO_BASE)}", "device BARs, in device_slot order, each aligned to its size"],
        ],
    )


TABLES: dict[str, Callable[[], str]] = {
    "profiles": _profiles,
    "config-header": lambda: _registers(hd.CONFIG_HEADER),
    "msi": lambda: _registers(hd.MSI_CAP),
    "msi-control": lambda: _bits(hd.MSI_CONTROL_BITS),
    "msix": lambda: _registers(hd.MSIX_CAP),
    "msix-control": lambda: _bits(hd.MSIX_CONTROL_BITS),
    "slot": lambda: _registers(hd.SLOT),
    "slot-control": lambda: _bits(hd.SLOT_CONTROL_BITS),
    "bar": _bar,
    "ram": _ram,
}


def render_device_model(arg: str) -> str:
    """One table of the device model: ``arg`` names it (:data:`TABLES`)."""
    try:
        return TABLES[arg]()
    except KeyError:
        raise DocsError(f"unknown device-model table {arg!r} (known: {', '.join(TABLES)})") from None
