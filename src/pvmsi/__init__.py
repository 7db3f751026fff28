"""pvmsi: a hypercall protocol by which a VM obtains its MSI, MSI-X and IMS messages from the hypervisor."""

from .spec.version import VERSION_MAJOR, VERSION_MINOR

__version__ = "0.1.0"
__all__ = ["VERSION_MAJOR", "VERSION_MINOR", "__version__"]
