"""Whether the next test of a run can still be carried out: the IUT is alive and the run's deadline has not
passed (docs/conformance-guide.md, "A dead IUT, and the run's deadline").

A test that cannot be carried out is not run: it gets the ``error`` verdict with one message, the same for all
of them, that starts with :data:`~.results.NOT_RUN`; the run goes on to the end at once, so that every test of
the selection has a verdict in the reports.
"""

from __future__ import annotations

import time
from typing import Any

from ..spec.iut import IutTimeout
from .harness.client import HarnessConnection
from .results import NOT_RUN


class NotRun(Exception):
    """The test was not carried out: the message says why, once for every test it stops."""


class RunWatch:
    """The IUT of the run, why it is dead (once it is), and the run's deadline."""

    def __init__(self, deadline_s: float | None) -> None:
        self.deadline_s = deadline_s
        self.until = time.monotonic() + deadline_s if deadline_s else None
        self.iut: Any = None
        self.dead: str | None = None
        #: The timeout of opening the IUT, reported as the verdict of the first test (the others are not run).
        self.open_error: IutTimeout | None = None
        self.last_test = ""

    def attach(self, iut: Any) -> None:
        """Watch ``iut``; a harness connection's waits end at the run's deadline."""
        self.iut = iut
        conn = self.connection
        if conn is not None:
            conn.until = self.until

    @property
    def connection(self) -> HarnessConnection | None:
        conn = getattr(self.iut, "conn", None)
        return conn if isinstance(conn, HarnessConnection) else None

    def check(self, test: str) -> None:
        """Before ``test``: raise :class:`NotRun` if it cannot be carried out, or the opening timeout for the first
        test of a run whose IUT never answered ``HELLO``."""
        conn = self.connection
        if self.dead is None and conn is not None and conn.dead is not None:
            self.dead = f"the IUT stopped answering during {self.last_test}: {conn.dead}"
        if self.dead is not None:
            raise NotRun(f"{NOT_RUN}{self.dead}")
        if self.until is not None and time.monotonic() >= self.until:
            raise NotRun(f"{NOT_RUN}the run's deadline (--deadline {self.deadline_s:g} s) passed")
        self.last_test = test
        if self.open_error is not None:
            self.dead = f"the IUT never answered HELLO: {self.open_error}"
            raise self.open_error
