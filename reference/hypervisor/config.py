"""Configuration of the reference hypervisor: what it offers and its limits (reported by GET_INFO)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ...spec.calls import LARGEST_BATCH
from ...spec.constants import FEATURES_1_0, MessageFormat
from ...spec.platforms import ARCH_TARGETS, DEFAULT_PLATFORM, platform
from ...spec.version import VERSION_MAJOR, VERSION_MINOR

#: The reference's largest vector per architecture (within the spec's ARCH_TARGETS ranges).
VECTOR_LIMIT = {"x86_64": 255, "arm64": 65535, "riscv64": 255}


@dataclass(frozen=True)
class HypervisorConfig:
    """Knobs of one reference hypervisor instance."""

    version_major: int = VERSION_MAJOR
    version_minor: int = VERSION_MINOR
    features_offered: int = int(FEATURES_1_0)
    features_required: int = 0
    #: The platform it runs on (spec "Message formats"): vtd, amd-vi, gic-its or imsic.
    platform: str = DEFAULT_PLATFORM
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
    #: Revoke a message that delivers more than this many times with no hypercall of its VM in between: the
    #: reference's stated storm rate (HV-REVOKE-001; harness vm_config.storm_limit: delivery storm_limit + 1 still
    #: arrives and revokes the message, the next fire does not deliver); None never revokes.
    storm_limit: int | None = None

    @property
    def message_format(self) -> MessageFormat:
        """The platform's message format (GET_INFO message_format, HV-FMT-001)."""
        return platform(self.platform).message_format

    @property
    def arch(self) -> str:
        return platform(self.platform).arch

    @cached_property
    def aligned_msi_vectors(self) -> bool:
        """Whether an MSI block's first vector must be aligned to its size: where the device's low data bits are
        the vector itself (IMSIC, HV-FMT-004)."""
        return platform(self.platform).key == "imsic"

    @cached_property
    def per_vector_targets(self) -> bool:
        """Whether each vector of a multi-message MSI block can have its own target (HV-MSI-001; not IMSIC,
        HV-MSI-002)."""
        return platform(self.platform).per_vector_targets

    @cached_property
    def vector_range(self) -> tuple[int, int]:
        """The vectors an entry may name (HV-ALLOC-006): x86 32..255, arm64 LPIs 8192..65535 (16 ID bits, as
        KVM's vGIC), riscv64 identities 1..255 (the reference's interrupt files, as QEMU's virt board)."""
        target = ARCH_TARGETS[platform(self.platform).arch]
        return target.vector_min, VECTOR_LIMIT[target.arch]

    def __post_init__(self) -> None:
        platform(self.platform)  # an unknown platform is a KeyError here
        if self.features_required & ~self.features_offered:
            raise ValueError("features_required must be a subset of features_offered (HV-DISC-004)")
        if not 1 <= self.max_batch <= LARGEST_BATCH:
            raise ValueError(f"max_batch must be in 1..{LARGEST_BATCH} (HV-DISC-004)")
        if self.yield_after is not None and self.yield_after < 1:
            raise ValueError("yield_after must be at least 1 (HV-BATCH-006)")
