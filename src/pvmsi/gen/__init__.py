"""Generators of bindings and test material from spec/ alone: C headers, layout checks, format vectors."""
