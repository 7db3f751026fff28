"""The pytest plugin that turns the suites into a conformance run: IUT fixtures, requirement markers, ICS
options, selection by requirement or section, and one verdict per test (pass, fail, unsupported, error,
timeout).

Use it in your own pytest run with ``pytest -p pvmsi.conformance.plugin --pvmsi-iut unix:/path ...`` on
``pvmsi/conformance/suites``; ``pvmsi conformance run`` does exactly that and writes the reports.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ..spec.iut import IutTimeout, Unsupported
from ..spec.platforms import PLATFORM_KEYS
from ..spec.requirements import SECTIONS, by_id
from .harness.client import IutCrash
from .ics import Ics, default_ics, load_ics
from .results import TestResult, Verdict
from .watch import NotRun, RunWatch

SUITES = Path(__file__).parent / "suites"
UNSUPPORTED_PREFIX = "unsupported: "


def suite_module_name(path: Path) -> str | None:
    """The installed name of a file of this package (``.../suites/guest/test_batch.py`` is
    ``pvmsi.conformance.suites.guest.test_batch``, a folder's ``__init__.py`` the folder's name), or None for a
    file outside it."""
    try:
        rel = path.resolve().relative_to(Path(__file__).parent.resolve())
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    return ".".join([__package__ or "pvmsi.conformance", *parts[: -1 if parts[-1:] == ["__init__"] else None]])


class SuiteModule(pytest.Module):
    """A suite file, imported under its installed name. pytest would name a file by the folders above it that
    hold an ``__init__.py`` (``conformance.suites...`` in a checkout, where the folder is not called pvmsi), and so
    import a second copy of the package; the suites import ``pvmsi.conformance`` and must share it."""

    def _getobj(self) -> ModuleType:
        name = suite_module_name(self.path)
        assert name is not None, self.path  # made only for files under SUITES (pytest_pycollect_makemodule)
        return importlib.import_module(name)


class SuitePackage(pytest.Package):
    """A folder of the suites (or above them, up to this package): its ``__init__.py`` (no ``setup_module``)
    imported under its installed name, for the reason :class:`SuiteModule` gives."""

    def setup(self) -> None:
        name = suite_module_name(self.path / "__init__.py")
        assert name is not None, self.path  # made only for folders under SUITES (pytest_collect_directory)
        importlib.import_module(name)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if suite_module_name(module_path) is None:
        return None
    return SuiteModule.from_parent(parent, path=module_path)


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if suite_module_name(path / "__init__.py") is None or not (path / "__init__.py").is_file():
        return None
    return SuitePackage.from_parent(parent, path=path)


class Preopened:
    """An IUT the runner opened before the run (so that an unreachable IUT is one clear error, not a failed test
    per test), or the timeout that opening it hit (then the first test gets the ``timeout`` verdict and the others
    are not run)."""

    def __init__(self, iut: Any = None, error: Exception | None = None) -> None:
        self.iut = iut
        self.error = error

    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[PREOPENED] = self

    def close(self) -> None:
        if self.iut is not None:
            self.iut.close()
            self.iut = None


PREOPENED = pytest.StashKey[Preopened]()
WATCH = pytest.StashKey[RunWatch]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pvmsi", "pvmsi conformance")
    group.addoption(
        "--pvmsi-iut", default="reference", help="reference | faulty:NAME | unix:PATH | tcp:HOST:PORT | exec:CMD"
    )
    group.addoption("--pvmsi-role", default="hypervisor", choices=["hypervisor", "guest"], help="role of the IUT")
    group.addoption("--pvmsi-ics", default=None, help="implementation conformance statement (TOML)")
    group.addoption(
        "--pvmsi-platform", default=None, choices=list(PLATFORM_KEYS), help="the platform, instead of the ICS's"
    )
    group.addoption("--pvmsi-timeout", type=float, default=10.0, help="seconds to wait for any one answer")
    group.addoption(
        "--pvmsi-deadline",
        type=float,
        default=None,
        help="seconds the whole run may take; the tests left when it passes are not run",
    )
    group.addoption("--pvmsi-requirement", action="append", default=[], help="run only tests naming this id")
    group.addoption("--pvmsi-section", action="append", default=[], help="run only tests in this section")
    group.addoption(
        "--pvmsi-record",
        default=None,
        help="record scenario vectors of passing tests into this folder "
        "(runs the reference hypervisor with a fixed handle seed)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[WATCH] = RunWatch(config.getoption("--pvmsi-deadline"))
    config.addinivalue_line("markers", "requirement(*ids): requirement ids the test checks")
    config.addinivalue_line("markers", "option(name): ICS option the test needs")
    config.addinivalue_line("markers", "platforms(*keys): the only platforms the test applies to")


def requirements_of(item: pytest.Item) -> list[str]:
    ids: list[str] = []
    for mark in item.iter_markers("requirement"):
        ids.extend(str(a) for a in mark.args)
    return ids


def role_of(item: pytest.Item) -> str:
    return "guest" if "guest" in Path(str(item.path)).parts[-2] else "hypervisor"


def section_of(ids: list[str]) -> str:
    return by_id(ids[0]).section if ids else ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted_ids = set(config.getoption("--pvmsi-requirement"))
    wanted_sections = set(config.getoption("--pvmsi-section"))
    for s in wanted_sections:
        if s not in SECTIONS:
            raise pytest.UsageError(f"unknown section {s!r}; known: {', '.join(SECTIONS)}")
    for rid in wanted_ids:
        by_id(rid)  # KeyError -> usage error below
    role = config.getoption("--pvmsi-role")
    keep: list[pytest.Item] = []
    for item in items:
        ids = requirements_of(item)
        if not ids:
            raise pytest.UsageError(f"{item.nodeid} names no requirement")
        for rid in ids:
            by_id(rid)
        if role_of(item) != role:
            continue
        if wanted_ids and not wanted_ids & set(ids):
            continue
        if wanted_sections and not wanted_sections & {by_id(r).section for r in ids}:
            continue
        keep.append(item)
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


class Recorder:
    """Collects one :class:`TestResult` per test, streaming each to an optional JSON-lines file."""

    def __init__(self, stream: Path | None = None, on_result: Callable[[TestResult], None] | None = None) -> None:
        self.results: list[TestResult] = []
        self.stream = stream
        self.on_result = on_result
        self.ics: Ics | None = None
        self.total = 0
        self.passed_items: list[pytest.Item] = []

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        """After teardown (when the scenario steps are complete), write passing tests' scenario vectors."""
        for item in [i for i in self.passed_items if i.nodeid == nodeid]:
            self.passed_items.remove(item)
            steps = getattr(item, "pvmsi_steps", None)
            if steps is None:
                continue
            from .scenarios import vector_document, write_vector

            directory = Path(item.config.getoption("--pvmsi-record"))
            directory.mkdir(parents=True, exist_ok=True)
            options = [str(a) for m in item.iter_markers("option") for a in m.args]
            doc = vector_document(_name(item), requirements_of(item), steps)
            doc["options"] = options
            write_vector(directory, doc)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.total = len(session.items)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        verdict: Verdict | None = None
        message = ""
        if report.when == "setup" and report.skipped:
            verdict, message = Verdict.UNSUPPORTED, _skip_reason(report)
        elif report.failed:
            exc = call.excinfo.value if call.excinfo is not None else None
            if isinstance(exc, NotRun | IutCrash):  # the message says it all: no exception class before it
                verdict, message = Verdict.ERROR, str(exc)
            elif isinstance(exc, Unsupported):
                verdict, message = Verdict.UNSUPPORTED, str(exc)
            elif isinstance(exc, IutTimeout):
                verdict, message = Verdict.TIMEOUT, str(exc)
            elif isinstance(exc, AssertionError) and report.when == "call":
                verdict, message = Verdict.FAIL, str(exc)
            else:
                verdict = Verdict.ERROR
                message = f"{type(exc).__name__}: {exc}" if exc is not None else report.longreprtext
        elif report.when == "call" and report.passed:
            verdict = Verdict.PASS
        elif report.when == "call" and report.skipped:
            verdict, message = Verdict.UNSUPPORTED, _skip_reason(report)
        if verdict is None:
            return
        if any(r.test == _name(item) for r in self.results):
            return  # teardown error after a verdict: the first verdict stands
        ids = requirements_of(item)
        result = TestResult(
            test=_name(item),
            role=role_of(item),
            section=section_of(ids),
            requirements=ids,
            levels=[by_id(r).level.value for r in ids],
            verdict=verdict,
            duration_s=round(getattr(item, "pvmsi_duration", report.duration), 6),
            message=message,
            transcript=list(getattr(item, "pvmsi_transcript", [])),
        )
        self.results.append(result)
        record = item.config.getoption("--pvmsi-record")
        if record and verdict is Verdict.PASS:
            self.passed_items.append(item)
        if self.stream is not None:
            with self.stream.open("a", encoding="utf-8") as f:
                f.write(json.dumps(result.model_dump(mode="json")) + "\n")
        if self.on_result is not None:
            self.on_result(result)


def _name(item: pytest.Item) -> str:
    return f"{Path(str(item.path)).stem}::{item.name}"


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ").removeprefix(UNSUPPORTED_PREFIX)


# -- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pvmsi_ics(pytestconfig: pytest.Config) -> Ics:
    path = pytestconfig.getoption("--pvmsi-ics")
    role = pytestconfig.getoption("--pvmsi-role")
    ics = load_ics(path, role) if path else default_ics(role)
    platform = pytestconfig.getoption("--pvmsi-platform")
    if platform is not None:  # the run names the platform (a faulty implementation's own)
        ics = ics.model_copy(update={"implementation": ics.implementation.model_copy(update={"platform": platform})})
    return ics


@pytest.fixture(autouse=True)
def _pvmsi_options(request: pytest.FixtureRequest, pvmsi_ics: Ics) -> None:
    """A test of an option the ICS does not claim is unsupported (ISO/IEC 9646 ICS)."""
    for mark in request.node.iter_markers("option"):
        for name in mark.args:
            if not pvmsi_ics.claims(str(name)):
                pytest.skip(f"{UNSUPPORTED_PREFIX}the ICS does not claim option {name!r}")
    platform = pvmsi_ics.implementation.platform
    for mark in request.node.iter_markers("platforms"):
        if platform not in mark.args:
            pytest.skip(
                f"{UNSUPPORTED_PREFIX}the test is for platform {' or '.join(mark.args)}, the ICS's is {platform}"
            )


@pytest.fixture(scope="session")
def pvmsi_iut(pytestconfig: pytest.Config, pvmsi_ics: Ics) -> Iterator[Any]:
    """The implementation under test named by ``--pvmsi-iut``, in the role ``--pvmsi-role`` gives it (an
    in-process hypervisor on the ICS's platform)."""
    platform = pvmsi_ics.implementation.platform
    from .connect import open_guest, open_hypervisor

    watch = pytestconfig.stash[WATCH]
    pre = pytestconfig.stash.get(PREOPENED, None)
    if pre is not None:  # opened (and closed) by the runner
        if isinstance(pre.error, IutTimeout):
            watch.open_error = pre.error
        elif pre.error is not None:
            raise pre.error
        watch.attach(pre.iut)
        yield pre.iut
        return
    timeout = pytestconfig.getoption("--pvmsi-timeout")
    if pytestconfig.getoption("--pvmsi-role") == "guest":
        iut: Any = open_guest(pytestconfig.getoption("--pvmsi-iut"), timeout, platform)
    elif pytestconfig.getoption("--pvmsi-record"):
        from ..reference.backend import ReferenceHypervisor
        from ..reference.hypervisor.config import HypervisorConfig
        from .scenarios import Recorder as ScenarioRecorder

        def host() -> ReferenceHypervisor:
            return ReferenceHypervisor(HypervisorConfig(handle_seed=1, platform=platform))

        iut = ScenarioRecorder(host(), new_host=host)  # a fresh host per test: vectors independent
    else:
        iut = open_hypervisor(pytestconfig.getoption("--pvmsi-iut"), timeout, platform)
    watch.attach(iut)
    try:
        yield iut
    finally:
        iut.close()


@pytest.fixture
def guest(request: pytest.FixtureRequest, pvmsi_iut: Any, pvmsi_ics: Ics) -> Iterator[Any]:
    """The suite plays the hypervisor for the guest under test; the transcript goes into the report."""
    from .guest_toolkit import GuestSession

    request.config.stash[WATCH].check(_name(request.node))
    g = GuestSession(pvmsi_iut, platform=pvmsi_ics.implementation.platform)
    request.node.pvmsi_transcript = g.transcript
    start = time.perf_counter()
    try:
        yield g
    finally:
        request.node.pvmsi_duration = time.perf_counter() - start


@pytest.fixture
def session(request: pytest.FixtureRequest, pvmsi_iut: Any, pvmsi_ics: Ics) -> Iterator[Any]:
    """A fresh :class:`~.toolkit.Session` (and VM) per test; its transcript goes into the report."""
    from .toolkit import Session

    request.config.stash[WATCH].check(_name(request.node))
    s = Session(pvmsi_iut, platform=pvmsi_ics.implementation.platform)
    request.node.pvmsi_transcript = s.transcript
    begin = getattr(pvmsi_iut, "begin", None)
    if begin is not None:
        begin()
    start = time.perf_counter()
    try:
        yield s
    finally:
        request.node.pvmsi_duration = time.perf_counter() - start
        s.close()
        steps = getattr(pvmsi_iut, "steps", None)
        if steps is not None:
            request.node.pvmsi_steps = list(steps)
