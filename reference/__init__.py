"""pvmsi.reference: the simulated platform, the reference hypervisor and the reference guest."""
