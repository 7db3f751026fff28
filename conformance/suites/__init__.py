"""The conformance suites: one folder per role of the implementation under test."""
