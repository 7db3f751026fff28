"""The deliberately faulty implementations (conformance/faults/) are small subclasses over the reference's public
hooks: no ``type: ignore``, no private attribute of another object read, set or patched, no decision on an
error's text, every fault a subclass of one of the three classes the registry builds, grouped by spec section."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pvmsi.conformance.faults import FAULTS, faulty_hypervisor
from pvmsi.conformance.faults.registry import FaultList
from pvmsi.reference.backend import ReferenceHypervisor
from pvmsi.reference.hypervisor.core import HypervisorCore
from pvmsi.reference.system import ReferenceSystem
from pvmsi.spec.requirements import by_id

FAULTS_DIR = Path(__file__).resolve().parent.parent / "conformance" / "faults"
MODULES = sorted(FAULTS_DIR.glob("*.py"))
#: The public API of named tuples (an underscore only to keep clear of field names).
NAMED_TUPLE_API = {"_replace", "_fields", "_make", "_asdict"}
#: Attributes that hold an error's human text.
TEXT_ATTRIBUTES = {"why", "reason", "args", "message"}


def _is_self_or_super(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _private(attr: str) -> bool:
    return attr.startswith("_") and not attr.startswith("__") and attr not in NAMED_TUPLE_API


def _private_access(tree: ast.AST) -> list[tuple[int, str]]:
    """``obj._name`` where obj is not self or cls (``super()._step`` included: the hooks are public), and
    ``setattr``/``delattr`` of any object."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        own = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
        if isinstance(node, ast.Attribute) and _private(node.attr) and not own:  # super()._step is private too
            found.append((node.lineno, ast.unparse(node)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            found.append((node.lineno, ast.unparse(node)))
    return found


def _method_patches(tree: ast.AST) -> list[tuple[int, str]]:
    """An attribute of another object assigned a function (a lambda or a nested def's name): monkeypatching."""
    local_functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if isinstance(target, ast.Attribute) and not _is_self_or_super(target.value):
                value = node.value
                if isinstance(value, ast.Lambda) or (isinstance(value, ast.Name) and value.id in local_functions):
                    found.append((node.lineno, ast.unparse(node)))
    return found


def _text_decisions(tree: ast.AST) -> list[tuple[int, str]]:
    """A comparison that involves an error's text: ``x.why``, ``str(e)``, a string ``in``/``==`` test on them."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for operand in (node.left, *node.comparators):
            for inner in ast.walk(operand):
                text = isinstance(inner, ast.Attribute) and inner.attr in TEXT_ATTRIBUTES
                text |= isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id == "str"
                if text:
                    found.append((node.lineno, ast.unparse(node)))
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_type_ignore(path: Path) -> None:
    assert "type: ignore" not in path.read_text()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_private_attribute_of_another_object(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert not _private_access(tree)
    assert not _method_patches(tree)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_decision_on_error_text(path: Path) -> None:
    assert not _text_decisions(ast.parse(path.read_text(), str(path)))


def test_the_checks_see_what_they_must_refuse() -> None:
    """The AST checks above catch the patterns the old monkeypatching module was made of."""
    bad = ast.parse(
        "core._dispatch[1] = x\n"
        "ops.alloc_entry = lambda c, k, cl, e: e\n"
        "setattr(ops, 'retarget', f)\n"
        "ok = 'HV-CALL-003' in r.why\n"
        "ok = 'already claimed' in str(e)\n"
        "r = yield from super()._call(fn)\n"
    )
    assert len(_private_access(bad)) == 3
    assert len(_method_patches(bad)) == 1
    assert len(_text_decisions(bad)) == 2
    good = ast.parse("self._seen = {}\nsuper().call(fn)\nr = r._replace(value=0)\nok = e.requirement == 'HV-DEV-004'\n")
    assert not _private_access(good)
    assert not _method_patches(good)
    assert not _text_decisions(good)


def test_modules_stay_small() -> None:
    for path in MODULES:
        assert len(path.read_text().splitlines()) <= 500, path.name


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_each_fault_is_a_subclass_built_fresh(name: str) -> None:
    impl = FAULTS[name]
    assert issubclass(impl.implementation, HypervisorCore | ReferenceSystem | ReferenceHypervisor)
    assert impl.implementation not in (HypervisorCore, ReferenceSystem, ReferenceHypervisor)
    assert by_id(impl.breaks).role.value == "hypervisor"
    first, second = faulty_hypervisor(name), faulty_hypervisor(name)
    assert first is not second
    assert first.system is not second.system
    assert first.name == f"faulty:{name}"
    if issubclass(impl.implementation, HypervisorCore):
        assert type(first.system.core) is impl.implementation
    elif issubclass(impl.implementation, ReferenceSystem):
        assert type(first.system) is impl.implementation


def test_a_fault_list_takes_only_the_three_classes() -> None:
    faults = FaultList()
    with pytest.raises(TypeError):
        faults.add("not-a-fault", "HV-CALL-001", "a class of nothing the registry builds")(int)
    assert faults.defined == []


def test_faults_are_grouped_by_section() -> None:
    sections = {Path(f.implementation.__module__.replace(".", "/")).name for f in FAULTS.values()}
    assert sections == {
        "calling",
        "negotiation",
        "memory",
        "device",
        "boundary",
        "messages",
        "formats",
        "batch",
        "activate",
        "security",
        "lifecycle",
        "teardown",
        "inflight",
        "events",
        "strength",
        "edges",
        "blind_hv",
        "check_order",
    }
