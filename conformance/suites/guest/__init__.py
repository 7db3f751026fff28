"""The guest suite: the suite plays the hypervisor for a guest under test."""
