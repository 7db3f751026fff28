"""What the hypervisor core needs from the platform around it (structural types, no I/O).

The simulated platform in :mod:`pvmsi.reference.platform` provides these; a real hypervisor would map them onto
its own guest-memory accessors, PCI device model and IOMMU driver.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ...spec.constants import MsgKind


class GuestMemory(Protocol):
    """Guest physical memory of one VM."""

    def is_ram(self, gpa: int, size: int) -> bool:
        """Whether ``[gpa, gpa + size)`` is entirely guest RAM."""
        ...

    def read(self, gpa: int, size: int) -> bytes:
        """Read guest RAM (the caller has checked :meth:`is_ram`)."""
        ...

    def write(self, gpa: int, data: bytes) -> None:
        """Write guest RAM (the caller has checked :meth:`is_ram`)."""
        ...


class Source(NamedTuple):
    """The requester a device's message writes carry: host segment and requester id, and a PASID if any
    (immutable; a tuple, so that it hashes in C: the remapping port looks it up on every allocation)."""

    segment: int
    rid: int
    pasid: int | None = None


class AssignedDevice(Protocol):
    """A device (or sub-device) assigned to a VM, as the hypervisor sees it."""

    @property
    def source(self) -> Source: ...

    @property
    def msi_max_vectors(self) -> int: ...

    @property
    def msix_table_size(self) -> int: ...

    @property
    def ims_slots(self) -> int: ...

    @property
    def isolated(self) -> bool: ...

    @property
    def needs_viommu(self) -> bool: ...

    @property
    def shared_source(self) -> bool:
        """Whether other sub-devices (or the function and its sub-devices) write with this requester id
        (PVMSI_DEV_SHARED_SOURCE, HV-SEC-010)."""
        ...

    def emulated_enabled(self, kind: MsgKind) -> bool:
        """Whether ``kind`` is enabled through the emulated capability (MSI Enable / MSI-X Enable)."""
        ...

    def program_msi(self, address: int, data: int, vectors: int) -> None:
        """Write ``address``/``data`` and Multiple Message Enable for ``vectors`` into the device's MSI capability,
        MSI Enable unchanged (the explicit model, spec "The emulation boundary")."""
        ...

    def clear_msi(self) -> None:
        """Clear MSI Enable, Message Address, Data and Multiple Message Enable of the device's MSI capability."""
        ...

    def clear_msix(self) -> None:
        """Put the device's MSI-X table as a reset leaves it: every entry masked, its address and data zero, MSI-X
        Enable and Function Mask clear (HV-RELEASE-001); the PBA, read-only, is left as the device keeps it."""
        ...


class VmPort(Protocol):
    """One VM: its vCPUs, memory and assigned devices, by the identities the guest sees."""

    @property
    def vm_id(self) -> int: ...

    @property
    def vcpu_count(self) -> int: ...

    @property
    def memory(self) -> GuestMemory: ...

    def device(self, segment: int, bus: int, devfn: int, pasid: int | None) -> AssignedDevice | None:
        """The device (``pasid`` None) or sub-device assigned at that guest identity, or None."""
        ...

    def set_emulation(self, device: AssignedDevice, kinds: int, trapped: bool) -> None:
        """Turn trapping/emulation of the MSI capability and MSI-X table of ``kinds`` (a KindMask) on or off."""
        ...

    def inject(self, vcpu: int, vector: int) -> None:
        """Inject a virtual interrupt of ``vector`` on ``vcpu`` that no device message caused: an event
        notification (HV-EVT-002), a re-activation's retrigger (HV-MIG-004)."""
        ...


class RemapPort(Protocol):
    """The interrupt-remapping hardware: a table of entries and the message format that names them."""

    def alloc(
        self,
        count: int,
        *,
        vm_id: int,
        vcpu: int,
        vector: int,
        source: Source,
        posted: bool,
        slot: object = None,
        present: bool = True,
    ) -> int | None:
        """Allocate ``count`` (a power of two) naturally aligned consecutive entries, entry ``base + i``
        delivering ``vector + i`` to ``vcpu`` of ``vm_id``, accepted from ``source`` only; the base, or None.
        Not ``present``: the entries are set aside and deliver nothing (a reservation, HV-ACT-001).
        ``slot`` names the device slot the pair is for: once freed, the entries are not reissued for another
        slot of the same requester id until the device is reset (HV-QUOTA-004)."""
        ...

    def alloc_at(
        self,
        base: int,
        count: int,
        *,
        vm_id: int,
        vcpu: int,
        vector: int,
        source: Source,
        posted: bool,
        slot: object = None,
    ) -> bool:
        """As :meth:`alloc`, at exactly ``base`` (a migration destination); False when those entries are taken."""
        ...

    def retarget(self, base: int, count: int, *, vcpu: int, vector: int, posted: bool) -> None:
        """Update the block's entries in place: entry ``base + i`` now delivers ``vector + i`` to ``vcpu``."""
        ...

    def program_vector(
        self, base: int, index: int, *, vcpu: int, vector: int, posted: bool, present: bool = True
    ) -> None:
        """Update entry ``base + index`` alone: it delivers ``vector`` to ``vcpu``, or nothing when not ``present``
        (HV-MSI-001, HV-ACT-005)."""
        ...

    def release(self, base: int) -> None:
        """Clear and free the block starting at ``base``."""
        ...

    def revoke(self, base: int) -> None:
        """Revoke the block starting at ``base`` for good: freed, and a write of its pair blocked from now on
        (HV-REVOKE-002)."""
        ...

    def share(self, vm_id: int) -> int | None:
        """How many entries VM ``vm_id`` may hold, pvmsi and emulated MSI/MSI-X together (its share of the table,
        HV-QUOTA-001, HV-QUOTA-002); None when the VM allocates from the whole table."""
        ...

    def limit_share(self, vm_id: int, entries: int | None) -> None:
        """Lower (or restore, None) how many entries of its share VM ``vm_id`` may hold."""
        ...

    def share_free(self, vm_id: int) -> int | None:
        """How many more entries VM ``vm_id`` may take in its share now: the share less what it holds, emulated
        vectors and entries kept for freed slots included (HV-QUOTA-002, HV-QUOTA-004); None without a share."""
        ...

    def compose(self, base: int) -> tuple[int, int]:
        """The (address, data) pair naming entry ``base`` (for a block, data | i names base + i)."""
        ...
