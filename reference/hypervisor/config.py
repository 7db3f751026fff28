"""Configuration of the reference hypervisor: what it offers and its limits (reported by GET_INFO)."""

from __future__ import annotations

from dataclasses import dataclass

from ...spec.calls import LARGEST_BATCH
from ...spec.constants import FEATURES_1_0, MessageFormat
from ...spec.version import VERSION_MAJOR, VERSION_MINOR


@dataclass(frozen=True)
class HypervisorConfig:
    """Knobs of one reference hypervisor instance."""

    version_major: int = VERSION_MAJOR
    version_minor: int = VERSION_MINOR
    features_offered: int = int(FEATURES_1_0)
    features_required: int = 0
    message_format: MessageFormat = MessageFormat.X86_REMAPPED
    #: Largest batch accepted (GET_INFO); each call is further limited to what one page holds (its max_batch).
    max_batch: int = LARGEST_BATCH
    max_claimed_devices: int = 16
    max_messages_per_vm: int = 8192
    max_messages_per_device: int = 4096
    #: Stop a batch with INCOMPLETE after this many entries per call (HV-BATCH-005); None never does.
    yield_after: int | None = None
    #: Remapping-table entries this VM may hold, pvmsi and emulated MSI/MSI-X together: the administrator's
    #: setting of its share (HV-QUOTA-001, HV-QUOTA-002); None: the whole share (the table / the VMs it admits).
    max_remap_entries: int | None = None
    #: Seed of the handle generator; None draws from the OS (unguessable, HV-SEC-004).
    handle_seed: int | None = None

    def __post_init__(self) -> None:
        if self.features_required & ~self.features_offered:
            raise ValueError("features_required must be a subset of features_offered (HV-DISC-004)")
        if not 1 <= self.max_batch <= LARGEST_BATCH:
            raise ValueError(f"max_batch must be in 1..{LARGEST_BATCH} (HV-DISC-004)")
        if self.yield_after is not None and self.yield_after < 1:
            raise ValueError("yield_after must be at least 1 (HV-BATCH-006)")
