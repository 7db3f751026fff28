"""The whole spec as one JSON-ready object (``pvmsi spec dump --json``), generated from spec/ alone."""

from __future__ import annotations

from typing import Any

from . import harness_devices as hd
from .callconv import CONVENTIONS
from .calls import CALLS
from .checks import dump_checks
from .constants import CONSTANT_GROUPS
from .harness_constants import HARNESS_VALUES, RESPONSE_OF
from .layout import FieldLayout, FormatLayout, all_layouts
from .platforms import ARCH_TARGETS, PLATFORMS, BitField
from .references import REFERENCES
from .requirements import REQUIREMENTS, SECTIONS
from .states import MACHINES
from .version import SPEC_NAME, VERSION_MAJOR, VERSION_MINOR

DUMP_SCHEMA_VERSION = 1


def _field(f: FieldLayout) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": f.name,
        "c_name": f.c_name,
        "offset": f.offset,
        "size": f.size,
        "type": f.type,
        "count": f.count,
        "reserved": f.reserved,
        "signed": f.signed,
        "doc": f.doc,
    }
    if f.enum:
        out["enum"] = f.enum
    if f.flags:
        out["flags"] = f.flags
    if f.values:
        out["values"] = f.values
    return out


def _format(lay: FormatLayout) -> dict[str, Any]:
    return {
        "name": lay.name,
        "c_name": lay.c_name,
        "area": lay.area,
        "size": lay.size,
        "alignment": lay.alignment,
        "doc": lay.doc,
        "fields": [_field(f) for f in lay.fields],
    }


def _bits(fields: tuple[BitField, ...]) -> list[dict[str, Any]]:
    return [{"bits": f.bits, "hi": f.hi, "lo": f.lo, "name": f.name, "value": f.value, "doc": f.doc} for f in fields]


def platforms_dump() -> dict[str, Any]:
    """The platforms, their message formats' bit layouts and each architecture's vCPU ids and vector ranges."""
    return {
        "platforms": [
            {
                "key": p.key,
                "title": p.title,
                "arch": p.arch,
                "message_format": {"name": p.message_format.name, "value": int(p.message_format)},
                "address": _bits(p.address),
                "data": _bits(p.data),
                "selects": p.selects,
                "source_validation": p.source_validation,
                "retarget": p.retarget,
                "retarget_changes_pair": p.retarget_changes_pair,
                "multi_msi": p.multi_msi,
                "per_vector_targets": p.per_vector_targets,
                "references": list(p.references),
            }
            for p in PLATFORMS
        ],
        "arch_targets": {
            a.arch: {
                "vcpu_id": a.vcpu_id,
                "vector_name": a.vector_name,
                "vector_min": a.vector_min,
                "vector_max_guaranteed": a.vector_max_guaranteed,
                "vector_max": a.vector_max,
                "vector_limit": a.vector_limit,
            }
            for a in ARCH_TARGETS.values()
        },
    }


def spec_dump() -> dict[str, Any]:
    """The machine-readable spec."""
    return {
        "spec": {
            "name": SPEC_NAME,
            "version": {"major": VERSION_MAJOR, "minor": VERSION_MINOR},
            "dump_schema_version": DUMP_SCHEMA_VERSION,
        },
        "formats": [_format(lay) for lay in all_layouts()],
        "constants": {
            g.key: [
                {"name": name, "c_name": g.c_name(name), "value": value, "doc": doc} for name, value, doc in g.members
            ]
            for g in CONSTANT_GROUPS
        },
        "constant_groups": [
            {"key": g.key, "c_prefix": g.c_prefix, "kind": g.kind, "doc": g.doc} for g in CONSTANT_GROUPS
        ],
        "calls": [
            {
                "name": c.name,
                "c_name": c.c_name,
                "function_number": int(c.fn),
                "function_id": {cc.arch: cc.function_id(c.fn) for cc in CONVENTIONS},
                "input": c.input,
                "input_entry": c.input_entry,
                "output": c.output,
                "output_entry": c.output_entry,
                "batched": c.batched,
                "max_batch": c.max_batch,
                "args": list(c.args),
                "value": c.value,
                "requires_negotiation": c.needs_negotiation,
                "valid_states": [st.value for st in c.states],
                "doc": c.doc,
                "checks": dump_checks(c.name),
            }
            for c in CALLS
        ],
        "message_formats": platforms_dump(),
        "calling_conventions": {
            cc.arch: {
                "instruction": list(cc.instruction),
                "function_id_register": cc.function_id_register,
                "function_id_encoding": cc.function_id_encoding,
                "extension_id_register": cc.extra_id_register,
                "call_base": cc.call_base,
                "argument_registers": list(cc.argument_registers),
                "status_register": cc.status_register,
                "value_register": cc.value_register,
                "preserved": cc.preserved,
                "returns": cc.returns,
                "discovery": [step.as_dict() for step in cc.discovery],
            }
            for cc in CONVENTIONS
        },
        "state_machines": [
            {
                "name": m.name,
                "initial": m.initial.value,
                "transitions": [
                    {"state": t.state.value, "event": t.event.value, "next": t.next.value, "effect": t.effect}
                    for t in m.transitions
                ],
            }
            for m in MACHINES
        ],
        "harness": {
            "values": [{"name": v.name, "value": v.value, "doc": v.doc} for v in HARNESS_VALUES],
            "responses": {request.name: response.name for request, response in RESPONSE_OF.items()},
            "devices": _harness_devices(),
        },
        "references": [
            {
                "key": r.key,
                "title": r.title,
                "publisher": r.publisher,
                "document": r.document,
                "kind": r.kind,
                "url": r.url,
                "used_for": r.used_for,
            }
            for r in REFERENCES
        ],
        "sections": [{"key": k, "title": t, "page": p} for k, (t, p) in SECTIONS.items()],
        "requirements": [
            {"id": r.id, "level": r.level.value, "role": r.role.value, "section": r.section, "text": r.text}
            for r in REQUIREMENTS
        ],
    }


def _harness_devices() -> dict[str, Any]:
    """The harness device model (spec appendix "Conformance harness protocol", "Device model")."""

    def registers(regs: tuple[hd.Register, ...]) -> list[dict[str, Any]]:
        return [{"name": r.name, "offset": r.offset, "size": r.size, "reset": r.reset} for r in regs]

    def bits(fields: tuple[hd.BitField, ...]) -> list[dict[str, Any]]:
        return [{"name": b.name, "low": b.low, "high": b.high, "access": b.access} for b in fields]

    return {
        "profiles": [
            {
                "profile": d.profile.name,
                "name": d.name,
                "vendor_id": d.vendor_id,
                "device_id": d.device_id,
                "msi_vectors": d.msi_vectors,
                "msi_per_vector_mask": d.msi_per_vector_mask,
                "msix_table_size": d.msix_table_size,
                "ims_slots": d.ims_slots,
                "subdevices": d.subdevices,
                "subdevice_slots": d.subdevice_slots,
                "ims_pasid": d.ims_pasid,
                "capabilities": [{"offset": at, "id": cid} for at, cid in d.capabilities],
                "bar0": {name: {"offset": at, "size": size} for name, (at, size) in d.bar().items()},
            }
            for d in hd.DEVICES.values()
        ],
        "config_header": registers(hd.CONFIG_HEADER),
        "msi_capability": {"offset": hd.MSI_CAP_OFFSET, "registers": registers(hd.MSI_CAP)},
        "msi_control": bits(hd.MSI_CONTROL_BITS),
        "msix_capability": {"offset": hd.MSIX_CAP_OFFSET, "registers": registers(hd.MSIX_CAP)},
        "msix_control": bits(hd.MSIX_CONTROL_BITS),
        "slot": {"size": hd.SLOT_SIZE, "registers": registers(hd.SLOT), "control": bits(hd.SLOT_CONTROL_BITS)},
        "guest_ram": {
            "low_ram_limit": hd.GUEST_LOW_RAM_LIMIT,
            "high_ram_base": hd.GUEST_HIGH_RAM_BASE,
            "interrupt_window": hd.GUEST_INTERRUPT_WINDOW,
            "interrupt_window_size": hd.GUEST_INTERRUPT_WINDOW_SIZE,
            "mmio_base": hd.GUEST_MMIO_BASE,
        },
    }
