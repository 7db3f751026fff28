"""What a guest that does not trust its host checks in a pair before writing it into a device (spec "Calling
conventions", "Confidential VMs"; GUEST-CVM-002)."""

from __future__ import annotations

from ...spec.constants import MessageFormat

#: x86 interrupt messages (Intel SDM Vol. 3A "Message Signalled Interrupts", AMD APM Vol. 2): the address is in
#: 0xFEE00000-0xFEEFFFFF whatever the remapping format.
X86_MSI_WINDOW = (0xFEE00000, 0xFEF00000)
#: The address window of each message format whose window is architectural; the others' windows (a vITS
#: doorbell, IMSIC interrupt-file pages) come from the platform's firmware tables, which this model lacks.
WINDOWS: dict[int, tuple[int, int]] = {
    int(MessageFormat.VTD_REMAPPED): X86_MSI_WINDOW,
    int(MessageFormat.AMD_VI): X86_MSI_WINDOW,
}


def pair_acceptable(message_format: int, address: int) -> bool:
    """Whether ``address`` lies in the interrupt window of ``message_format`` (and is not zero)."""
    window = WINDOWS.get(message_format)
    if window is None:
        return address != 0
    return window[0] <= address < window[1]
