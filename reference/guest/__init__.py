"""The reference guest: a sans-I/O guest core in the shape of a kernel's irqdomain layer."""
