"""The public hooks of the reference hypervisor (the steps a subclass may override, the factories of its parts):
each is documented with the spec section or requirement it implements, each is the one place its step happens,
and every failure carries its status and requirement id as data."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from pvmsi.reference.backend import ReferenceHypervisor
from pvmsi.reference.hypervisor.blocks import MemoryRules
from pvmsi.reference.hypervisor.call import Call, CallResult
from pvmsi.reference.hypervisor.core import Handler, HypervisorCore
from pvmsi.reference.hypervisor.errors import CallError
from pvmsi.reference.hypervisor.messages import (
    MSG_ACTIVATE,
    MSG_ALLOC,
    MSG_DEACTIVATE,
    MSG_FREE,
    BatchFormats,
    MessageCalls,
)
from pvmsi.reference.hypervisor.ports import GuestMemory
from pvmsi.reference.hypervisor.vmstate import Claim, DeviceKey
from pvmsi.reference.platform.fault import FaultReason
from pvmsi.reference.platform.iommu import Iommu
from pvmsi.reference.platform.platform import Platform
from pvmsi.reference.platform.remap import RemappingTable
from pvmsi.reference.platform.requester import Requester
from pvmsi.reference.platform.vm import Vm
from pvmsi.reference.system import PlatformRemap, ReferenceSystem, SystemVm
from pvmsi.spec.calls import CALLS_BY_FN
from pvmsi.spec.constants import FunctionNumber, KindMask, Status
from pvmsi.spec.fastcodec import fast
from pvmsi.spec.formats import BATCH_IN, NEGOTIATE_IN
from pvmsi.spec.harness_constants import DeviceProfile
from pvmsi.spec.iut import DeviceRef, DeviceSlot
from pvmsi.spec.layout import layout_of
from pvmsi.spec.records import RECORDS, AllocEntry, AllocResult, BatchIn, FreeEntry, FreeResult
from pvmsi.spec.requirements import REQUIREMENTS

HYPERVISOR = Path(__file__).resolve().parent.parent / "reference" / "hypervisor"
REQUIREMENT_ID = re.compile(r"\b(?:HV|GEN)-[A-Z]+-\d{3}\b")
SPEC_SECTION = re.compile(r'spec "[^"]+"')
KNOWN_IDS = {r.id for r in REQUIREMENTS}
SCRATCH = 0x10000
DEVICE = DeviceRef(0, 3, 0)


def _hooks(cls: type) -> list[tuple[str, Any]]:
    """The public methods ``cls`` defines itself (its hooks)."""
    return [(n, f) for n, f in vars(cls).items() if not n.startswith("_") and inspect.isfunction(f)]


HOOK_CLASSES = (HypervisorCore, MessageCalls, MemoryRules, ReferenceSystem, Iommu)
HOOKS = [(cls, name) for cls in HOOK_CLASSES for name, _ in _hooks(cls)]
#: Public methods that are entry points or bookkeeping, not steps of the protocol a fault would replace.
NOT_STEPS = {
    (HypervisorCore, "state_of"),
    (HypervisorCore, "configure_vm"),
    (HypervisorCore, "vm_states"),
    (ReferenceSystem, "create_vm"),
    (ReferenceSystem, "hypercall"),
    (ReferenceSystem, "trap"),
    (ReferenceSystem, "execute_trap"),
    (ReferenceSystem, "unplug"),
    (ReferenceSystem, "migrate"),
    (MessageCalls, "lookup_fields"),
    (MessageCalls, "verdict"),
}


@pytest.mark.parametrize(("cls", "name"), HOOKS, ids=[f"{c.__name__}.{n}" for c, n in HOOKS])
def test_every_hook_cites_what_it_implements(cls: type, name: str) -> None:
    doc = inspect.getdoc(getattr(cls, name)) or ""
    if (cls, name) in NOT_STEPS:
        return
    assert doc, f"{cls.__name__}.{name} has no docstring"
    cited = REQUIREMENT_ID.findall(doc)
    assert cited or SPEC_SECTION.search(doc), f"{cls.__name__}.{name} cites no requirement id or spec section"
    assert set(cited) <= KNOWN_IDS, f"{cls.__name__}.{name} cites unknown ids {set(cited) - KNOWN_IDS}"
    assert not re.search(r"#\d+|\bissue\b", doc), f"{cls.__name__}.{name} cites an issue"


def _raise_sites() -> list[tuple[str, int, ast.Call]]:
    sites = []
    for path in sorted(HYPERVISOR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "CallError":
                sites.append((path.name, node.lineno, node))
    return sites


def test_every_call_error_names_a_known_requirement() -> None:
    """Every raise site gives the status, the requirement id (a literal of a defined requirement) and the text."""
    sites = _raise_sites()
    assert len(sites) > 10  # the call-specific checks raise through OrderedChecks.check_error (spec/checks.py)
    for file, line, call in sites:
        if file == "errors.py" and not call.args:
            continue
        assert len(call.args) in (3, 4), f"{file}:{line}"
        requirement = call.args[1]
        if isinstance(requirement, ast.Constant):
            assert requirement.value in KNOWN_IDS, f"{file}:{line}: {requirement.value!r}"
        else:  # chosen among literals (a conditional expression or a variable set from literals)
            assert isinstance(requirement, ast.Name | ast.IfExp | ast.Attribute), f"{file}:{line}"


def test_no_requirement_id_in_the_human_text() -> None:
    for file, line, call in _raise_sites():
        if len(call.args) == 3:
            assert not REQUIREMENT_ID.search(ast.unparse(call.args[2])), f"{file}:{line}: the id belongs in the data"


# -- failures as data ---------------------------------------------------------------------------------------------


def _hypervisor(core: type[HypervisorCore] = HypervisorCore) -> tuple[ReferenceHypervisor, int]:
    hv = ReferenceHypervisor(core=core)
    vm = hv.create_vm(2, 16, [DeviceSlot(DeviceProfile.MLX5, DEVICE)])
    return hv, vm


def _negotiate(hv: ReferenceHypervisor, vm: int) -> None:
    hv.mem_write(vm, SCRATCH, fast("negotiate_in").encode({"version_major": 1, "version_minor": 0, "features": 7}))
    assert hv.hypercall(vm, 0, FunctionNumber.NEGOTIATE, (SCRATCH, SCRATCH + 512, 0, 0))[0] == Status.SUCCESS


def _raw(hv: ReferenceHypervisor, vm: int, fn: int, args: tuple[int, int, int, int]) -> CallResult:
    return hv.system.core.hypercall(hv.system.vms[vm], 0, fn, args)


@pytest.mark.parametrize(
    ("fn", "args", "status", "requirement"),
    [
        (0x7F, (0, 0, 0, 0), Status.NOT_SUPPORTED, "HV-CALL-001"),
        (FunctionNumber.VERSION, (0, 0, 1, 0), Status.INVALID_PARAMETER, "HV-CALL-003"),
        (FunctionNumber.DEVICE_QUERY, (SCRATCH, SCRATCH + 512, 0, 0), Status.WRONG_STATE, "HV-STATE-002"),
        (FunctionNumber.GET_INFO, (0, SCRATCH + 4, 0, 0), Status.INVALID_ADDRESS, "HV-MEM-001"),
    ],
)
def test_a_failed_call_carries_its_requirement(
    fn: int, args: tuple[int, int, int, int], status: Status, requirement: str
) -> None:
    hv, vm = _hypervisor()
    r = _raw(hv, vm, fn, args)
    assert (r.status, r.value, r.requirement) == (status, 0, requirement)
    assert r.why
    assert requirement not in r.why


def test_a_reserved_field_and_an_undefined_value_name_their_requirements() -> None:
    hv, vm = _hypervisor()
    block = bytearray(fast("negotiate_in").encode({"version_major": 1, "version_minor": 0, "features": 7}))
    reserved = next(leaf for leaf in layout_of(NEGOTIATE_IN).leaves() if leaf.field.reserved)
    block[reserved.offset] = 1
    hv.mem_write(vm, SCRATCH, bytes(block))
    r = _raw(hv, vm, FunctionNumber.NEGOTIATE, (SCRATCH, SCRATCH + 512, 0, 0))
    assert (r.status, r.requirement) == (Status.INVALID_PARAMETER, "HV-CONV-001")


def test_a_success_carries_no_requirement() -> None:
    hv, vm = _hypervisor()
    r = _raw(hv, vm, FunctionNumber.VERSION, (0, 0, 0, 0))
    assert r.status == Status.SUCCESS
    assert r.requirement == ""
    assert r.why == ""


def test_call_error_keeps_status_requirement_and_text_apart() -> None:
    e = CallError(Status.WRONG_STATE, "HV-DEV-007", "device already claimed")
    assert (e.status, e.requirement, e.why) == (Status.WRONG_STATE, "HV-DEV-007", "device already claimed")
    assert "HV-DEV-007" in str(e)


# -- the dispatch table -------------------------------------------------------------------------------------------


def test_the_dispatch_table_comes_from_handler() -> None:
    class WithoutFree(HypervisorCore):
        def handler(self, fn: FunctionNumber) -> Handler | None:
            return None if fn is FunctionNumber.MSG_FREE else super().handler(fn)

    assert set(ReferenceSystem().core.dispatch) == set(CALLS_BY_FN)
    hv, vm = _hypervisor(WithoutFree)
    assert int(FunctionNumber.MSG_FREE) not in hv.system.core.dispatch
    assert _raw(hv, vm, FunctionNumber.MSG_FREE, (SCRATCH, SCRATCH + 512, 0, 0)).status == Status.NOT_SUPPORTED


def test_the_batch_formats_come_from_the_call_table() -> None:
    for formats in (MSG_ALLOC, MSG_ACTIVATE, MSG_FREE, MSG_DEACTIVATE):
        call = CALLS_BY_FN[formats.call.fn]
        assert call.batched
        assert (formats.entry.name, formats.result.name) == (call.input_entry, call.output_entry)
    with pytest.raises(ValueError, match="not a batched call"):
        BatchFormats.of(FunctionNumber.NEGOTIATE)


def test_records_match_their_layouts() -> None:
    for name, record in RECORDS.items():
        ff = fast(name)
        assert ff.record_type is record
        assert list(record._fields) == [p.replace(".", "_") for p in ff.fields]
    assert fast("batch_in").unpack_record_from(bytes(layout_of(BATCH_IN).size)) == BatchIn(*[0] * 10)


# -- the per-entry operations take and give named records ---------------------------------------------------------


def test_entry_operations_take_and_give_records() -> None:
    seen: list[object] = []

    class Recording(HypervisorCore):
        def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
            seen.append(e)
            result = super().alloc_entry(c, key, claim, e)
            seen.append(result)
            return result

        def free_entry(self, c: Call, key: DeviceKey, claim: Claim, e: FreeEntry) -> FreeResult:
            seen.append(e)
            return super().free_entry(c, key, claim, e)

    hv, vm = _hypervisor(Recording)
    _negotiate(hv, vm)
    claim = fast("claim_in").encode(
        {"device": {"segment": 0, "bus": 3, "devfn": 0, "flags": 0, "subdevice_id": 0}, "kinds": KindMask.MSIX}
    )
    hv.mem_write(vm, SCRATCH, claim)
    assert hv.hypercall(vm, 0, FunctionNumber.DEVICE_CLAIM, (SCRATCH, 0, 0, 0))[0] == Status.SUCCESS
    header = {"device": {"segment": 0, "bus": 3, "devfn": 0, "flags": 0, "subdevice_id": 0}, "count": 1, "start": 0}
    entry = {
        "kind": 2,
        "flags": 0,
        "vector_count": 1,
        "slot": 0,
        "vcpu": 1,
        "vector": 40,
        "alloc_flags": 1,
        "hint_vcpu": 0,
    }
    hv.mem_write(vm, SCRATCH, fast("batch_in").encode(header) + fast("alloc_entry").encode(entry))
    assert hv.hypercall(vm, 0, FunctionNumber.MSG_ALLOC, (SCRATCH, SCRATCH + 512, 0, 0)) == (Status.SUCCESS, 1)
    e, result = seen
    assert isinstance(e, AllocEntry)
    assert (e.kind, e.slot, e.vcpu, e.vector) == (2, 0, 1, 40)
    assert isinstance(result, AllocResult)
    assert result.handle
    assert result.status == 0


# -- the factories ------------------------------------------------------------------------------------------------


def test_the_memory_rules_come_from_make_rules() -> None:
    checked: list[int] = []

    class Counting(MemoryRules):
        def block(self, memory: GuestMemory, gpa: int, size: int, what: str) -> None:
            checked.append(gpa)
            super().block(memory, gpa, size, what)

    class Core(HypervisorCore):
        def make_rules(self) -> MemoryRules:
            return Counting()

    hv, vm = _hypervisor(Core)
    assert isinstance(hv.system.core.rules, Counting)
    _raw(hv, vm, FunctionNumber.GET_INFO, (0, SCRATCH, 0, 0))
    assert checked == [SCRATCH]


def test_the_system_makes_its_parts_through_its_factories() -> None:
    class Validating(Iommu):
        def check_source(self, source: Requester, requester: Requester) -> FaultReason | None:
            return super().check_source(source, requester)

    class Remap(PlatformRemap):
        pass

    class Port(SystemVm):
        pass

    class System(ReferenceSystem):
        def make_platform(self, remap_entries: int | None) -> Platform:
            platform = super().make_platform(remap_entries)
            assert isinstance(platform.iommu, Validating)
            return platform

        def make_iommu(self, table: RemappingTable) -> Iommu:
            return Validating(table)

        def make_remap(self, table: RemappingTable) -> PlatformRemap:
            return Remap(table)

        def make_vm(self, vm: Vm) -> SystemVm:
            return Port(self.platform, vm)

    system = System(remap_entries=256)
    assert isinstance(system.platform.iommu, Validating)
    assert system.platform.table.capacity == 256
    assert isinstance(system.core.remap, Remap)
    assert isinstance(system.create_vm(), Port)
    hv = ReferenceHypervisor(system=System)
    assert isinstance(hv.system.vms.get(hv.create_vm(1, 16, [])), Port)
