"""The reference hypervisor: a sans-I/O core that executes one pvmsi hypercall at a time."""
