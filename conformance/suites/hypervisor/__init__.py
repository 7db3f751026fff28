"""The hypervisor suite: the suite plays the guest against a hypervisor under test."""
