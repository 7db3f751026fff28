"""One source of truth, tested by experiment: in a copy of the project whose spec has two same-sized fields of a
batched entry format swapped (a legal spec edit), the reference, the suites and the faulty implementations still
agree end to end, with no other edit; and the type-checker's view of the records names the layouts' fields."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from paths import ROOT
from typecheck import package_dir

from pvmsi.spec.layout import format_layout
from pvmsi.spec.records import RECORD_FORMATS

#: The swapped pairs: two u32 fields of an entry the reference, the guest and every fault read, and two u64
#: fields of a result they build.
SWAPS = [("alloc_entry", "vcpu", "vector"), ("alloc_result", "handle", "address")]

#: Run before anything of pvmsi is imported: maps pvmsi and its three folders onto the copy (as the editable
#: install maps them onto the checkout), ahead of every other finder.
BOOTSTRAP = textwrap.dedent(
    """
    import importlib.util, sys
    ROOTS = {roots!r}
    class CopyFinder:
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name in ROOTS:
                return importlib.util.spec_from_file_location(
                    name, ROOTS[name] + "/__init__.py", submodule_search_locations=[ROOTS[name]]
                )
            return None
    sys.meta_path.insert(0, CopyFinder)
    """
)


def _stub_fields() -> dict[str, list[str]]:
    """The fields of each record class declared for the type checker in spec/records.py."""
    tree = ast.parse((ROOT / "spec" / "records.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    out: dict[str, list[str]] = {}
    for node in block.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = [s.target.id for s in node.body if isinstance(s, ast.AnnAssign)]  # type: ignore[union-attr]
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            name = node.targets[0].id  # type: ignore[attr-defined]
            pairs = node.value.args[1]
            assert isinstance(pairs, ast.List)
            out[name] = [ast.literal_eval(p.elts[0]) for p in pairs.elts if isinstance(p, ast.Tuple)]
    return out


def test_type_checker_records_name_the_layout_fields() -> None:
    stubs = _stub_fields()
    for name in RECORD_FORMATS:
        title = "".join(part.capitalize() for part in name.split("_"))
        leaves = [leaf.path.replace(".", "_") for leaf in format_layout(name).leaves()]
        assert sorted(stubs[title]) == sorted(leaves), name


def _swap_fields(source: str, fmt: str, first: str, second: str) -> str:
    """``source`` (a formats module) with the two fields swapped in the Struct of the format named ``fmt``."""
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))

    def span(e: ast.expr) -> tuple[int, int]:
        end_line, end_col = e.end_lineno, e.end_col_offset
        assert end_line is not None
        assert end_col is not None
        return offsets[e.lineno - 1] + e.col_offset, offsets[end_line - 1] + end_col

    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "define"
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == fmt
        ):
            struct = node.args[3]
            assert isinstance(struct, ast.Call)
            fields = {_field_name(e): e for e in struct.args}
            (a0, a1), (b0, b1) = sorted([span(fields[first]), span(fields[second])])
            return source[:a0] + source[b0:b1] + source[a1:b0] + source[a0:a1] + source[b1:]
    raise AssertionError(f"no define({fmt!r}, ...) in the source")


def _field_name(e: ast.expr) -> str:
    """The name of a construct field written ``"name" / subcon * "doc"``."""
    node = e
    while isinstance(node, ast.BinOp):
        node = node.left
    assert isinstance(node, ast.Constant), ast.unparse(e)
    assert isinstance(node.value, str), ast.unparse(e)
    return node.value


@pytest.fixture(scope="module", params=SWAPS, ids=lambda swap: f"{swap[0]}.{swap[1]}<->{swap[2]}")
def swapped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str, str]:
    """A copy of the project's packages with two fields of a format swapped in its spec, and which."""
    fmt, first, second = request.param
    copy = tmp_path_factory.mktemp("swapped")
    for folder in {path.relative_to(ROOT).parts[0] for path in package_dir().values()}:
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    messages = copy / "spec" / "formats" / "messages.py"
    messages.write_text(_swap_fields(messages.read_text(), fmt, first, second))
    return copy, fmt, first, second


def _pvmsi(copy: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    roots = {package: str(copy / folder.relative_to(ROOT)) for package, folder in package_dir().items()}
    program = BOOTSTRAP.format(roots=roots) + (
        code or f"import sys\nfrom pvmsi.cli import main\nsys.argv = ['pvmsi', *{list(args)!r}]\nmain()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", program], cwd=copy, capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.slow
def test_the_copy_really_has_the_fields_swapped(swapped: tuple[Path, str, str, str]) -> None:
    copy, fmt, first, second = swapped
    here = {f.name: f.offset for f in format_layout(fmt).fields}
    probe = _pvmsi(
        copy,
        code=textwrap.dedent(
            f"""
            import pvmsi.spec.layout as layout
            assert layout.__file__.startswith({str(copy)!r}), layout.__file__
            print({{f.name: f.offset for f in layout.format_layout({fmt!r}).fields}})
            """
        ),
    )
    assert probe.returncode == 0, probe.stderr
    there = ast.literal_eval(probe.stdout.strip())
    assert (there[first], there[second]) == (here[second], here[first])


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("conformance", "run", "--role", "hypervisor", "--iut", "reference"),
        ("conformance", "run", "--role", "guest", "--iut", "reference"),
        ("demo",),
        ("conformance", "check-faults"),
    ],
    ids=["hypervisor-suite", "guest-suite", "demo-end-to-end", "every-fault-caught"],
)
def test_reference_suite_and_faults_agree_after_the_swap(
    swapped: tuple[Path, str, str, str], args: tuple[str, ...]
) -> None:
    """The guest allocates, writes the pair, the device fires and the vCPU sees the vector (demo); both suites pass
    against the reference; the suites still catch every faulty implementation."""
    proc = _pvmsi(swapped[0], *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if args[-1] == "check-faults":
        assert " 0 missed" in proc.stdout
