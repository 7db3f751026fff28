"""The **exits** figures of ``pvmsi bench`` (:mod:`.bench`): the exits and device writes of setting up and
retargeting N vectors on an MSI-X table, an IMS store and a multi-message MSI capability, emulated and through
pvmsi, each setup checked by firing; and the fewest exits any design with page-sized parameter blocks needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..spec.calls import CALLS_BY_FN
from ..spec.constants import FunctionNumber, MsgKind
from .bench_setup import DEVICE_BDF, VCPUS, BenchError, BenchGuest, boot_guest
from .guest.actions import GuestDevice
from .guest.core import GuestMessage, Target
from .platform.platform import Delivered
from .platform.profiles import MLX5_LIKE, MSI_MULTI, DeviceProfile

DEVICES: dict[str, tuple[DeviceProfile, MsgKind]] = {
    "msix": (MLX5_LIKE, MsgKind.MSIX),
    "ims": (MLX5_LIKE, MsgKind.IMS),
    "msi": (MSI_MULTI, MsgKind.MSI),
}


def _targets(kind: MsgKind, n: int, shift: int = 0) -> list[Target]:
    if kind is MsgKind.MSI:
        return [Target(0, shift % VCPUS, 0x40 + shift, n)]
    return [Target(i, (i + shift) % VCPUS, 0x30 + (i + shift) % 200) for i in range(n)]


def _check_fire(g: BenchGuest, kind: MsgKind, msgs: Sequence[GuestMessage]) -> None:
    pci = g.vm.pci(DEVICE_BDF.segment, DEVICE_BDF.bus, DEVICE_BDF.devfn)
    assert pci is not None
    for m in (msgs[0], msgs[-1]):
        index = m.count - 1 if kind is MsgKind.MSI else m.slot
        outcome = g.system.platform.fire(pci, kind, index)
        want = (m.vcpu, m.vector + (index if kind is MsgKind.MSI else 0))
        got = (outcome.delivery.vcpu, outcome.delivery.vector) if isinstance(outcome, Delivered) else None
        if got != want:
            raise BenchError(f"{kind.name} slot {m.slot}: expected vCPU/vector {want}, got {outcome}")


#: Calls made once per device before its first allocation: DEVICE_QUERY and DEVICE_CLAIM.
DEVICE_CALLS = 2
#: Trapped configuration-space accesses per message capability the guest configures (read, then write, Message
#: Control), counted on both paths: to switch the kind off before claiming it, and to enable it (configuration
#: space stays trapped after a claim, HV-EMU-001).
CAPABILITY_ACCESSES = 2


def physical_limit(profile: DeviceProfile, kind: MsgKind, operation: str, n: int) -> int:
    """The fewest exits any design whose parameter blocks are a page at most needs for ``operation`` on ``n``
    vectors: one exit per page-full batch (the call's ``max_batch``, what a page holds of its entries and
    results), plus, to set up, the device's fixed set-up (its calls and the trapped accesses to its message
    capabilities, as the emulated path counts them)."""
    entries = 1 if kind is MsgKind.MSI else n  # a multi-message MSI block is one entry
    # A setup as Linux does it: reserve (MSG_ALLOC), then activate (MSG_ACTIVATE); a move: MSG_ACTIVATE.
    fns = (
        (FunctionNumber.MSG_ALLOC, FunctionNumber.MSG_ACTIVATE)
        if operation == "setup"
        else (FunctionNumber.MSG_ACTIVATE,)
    )
    batches = sum(-(-entries // (CALLS_BY_FN[fn].max_batch or 1)) for fn in fns)
    if operation != "setup":
        return batches
    return DEVICE_CALLS + config_limit(profile, kind) + batches


def config_limit(profile: DeviceProfile, kind: MsgKind) -> int:
    """The configuration-space exits a setup of ``kind`` cannot avoid on the pvmsi path, where configuration space
    stays trapped (HV-EMU-001): Message Control of every capability switched off before the claim (the guest
    claims every kind), Message Control again to enable ``kind`` (none for IMS), and for MSI with per-vector
    masking the Mask Bits write that unmasks the block."""
    capabilities = (profile.msi_vectors > 0) + (profile.msix_table_size > 0)
    enable = 0 if kind is MsgKind.IMS else CAPABILITY_ACCESSES
    unmask = 1 if kind is MsgKind.MSI and profile.msi_per_vector_mask else 0
    return CAPABILITY_ACCESSES * capabilities + enable + unmask


def exit_rows(device: str, n: int) -> list[dict[str, Any]]:
    """Setup and retarget rows for ``n`` vectors on ``device`` ("msix", "ims" or "msi")."""
    profile, kind = DEVICES[device]
    dev = GuestDevice(DEVICE_BDF.segment, DEVICE_BDF.bus, DEVICE_BDF.devfn)
    counts: dict[str, dict[str, int | None]] = {}
    for mode in ("emulated", "pvmsi"):
        if mode == "emulated" and kind is MsgKind.IMS:
            counts[mode] = dict.fromkeys(
                ("setup", "retarget", "setup_writes", "retarget_writes", "setup_config", "retarget_config")
            )
            continue
        g = boot_guest(profile, mode == "pvmsi")
        e0, w0, c0 = g.exits, g.driver.device_writes, g.config_exits
        msgs = g.driver.run(g.core.enable(dev, kind, _targets(kind, n)))
        e1, w1, c1 = g.exits, g.driver.device_writes, g.config_exits
        _check_fire(g, kind, msgs)
        moves = [(m, (m.vcpu + 1) % VCPUS, 0x30 + (m.vector - 0x30 + 7) % 200) for m in msgs]
        e2, w2, c2 = g.exits, g.driver.device_writes, g.config_exits
        g.driver.run(g.core.set_affinity(dev, moves))
        e3, w3, c3 = g.exits, g.driver.device_writes, g.config_exits
        _check_fire(g, kind, msgs)
        counts[mode] = {
            "setup": e1 - e0,
            "retarget": e3 - e2,
            "setup_writes": w1 - w0,
            "retarget_writes": w3 - w2,
            "setup_config": c1 - c0,
            "retarget_config": c3 - c2,
        }
    rows = []
    for op in ("setup", "retarget"):
        emulated, pv = counts["emulated"][op], counts["pvmsi"][op]
        assert pv is not None
        rows.append(
            {
                "device": device,
                "operation": op,
                "vectors": n,
                "emulated": emulated,
                "pvmsi": pv,
                "physical_limit": physical_limit(profile, kind, op, n),
                "pvmsi_device_writes": counts["pvmsi"][f"{op}_writes"],
                "emulated_device_writes": counts["emulated"][f"{op}_writes"],
                # configuration-space exits, trapped on both paths (HV-EMU-001); part of the totals above
                "pvmsi_config_exits": counts["pvmsi"][f"{op}_config"],
                "emulated_config_exits": counts["emulated"][f"{op}_config"],
                "reduction": None if emulated is None else round(emulated / max(pv, 1), 1),
            }
        )
    return rows


def boot_exits() -> dict[str, int]:
    """Exits of discovery and negotiation (once per guest boot, not per device), pvmsi and fallback."""
    return {
        "pvmsi": boot_guest(MLX5_LIKE, True).exits,
        "emulated_fallback": boot_guest(MLX5_LIKE, False).exits,
    }
