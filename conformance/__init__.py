"""pvmsi.conformance: the harness protocol, the suites for both roles, ICS, reports and test vectors."""
