"""Per-call sections, function-id tables, calling conventions and state machines, generated from spec/."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from pvmsi.spec.callconv import (
    CONVENTIONS,
    RISCV_EXTENSION_ID,
    SBI_ERROR_OF_STATUS,
    X86_PATH_DOCS,
    CallingConvention,
    SbiError,
)
from pvmsi.spec.calls import CALLS, CallDef
from pvmsi.spec.checks import CHECKS
from pvmsi.spec.constants import Limit, Status
from pvmsi.spec.states import MACHINES, StateMachine, Transition

from .constants import render_register
from .context import Ctx, DocsError, call_anchor, machine_anchor
from .formats import layout
from .markup import code, escape_plain, hx, md_text, table
from .requirements import render_governing

ARCH_TITLES: dict[str, str] = {"x86_64": "x86-64", "arm64": "arm64", "riscv64": "riscv64"}
#: The value of a convention's extra id register (spec/callconv.py keeps it as a module constant).
EXTENSION_IDS: dict[str, int] = {"riscv64": RISCV_EXTENSION_ID}


def convention(arch: str) -> CallingConvention:
    for cc in CONVENTIONS:
        if cc.arch == arch:
            return cc
    raise DocsError(f"unknown architecture {arch!r} (known: {', '.join(cc.arch for cc in CONVENTIONS)})")


def call_def(name: str) -> CallDef:
    for c in CALLS:
        if c.name == name:
            return c
    raise DocsError(f"unknown call {name!r} (known: {', '.join(c.name for c in CALLS)})")


def function_id_text(cc: CallingConvention, c: CallDef) -> str:
    """What the guest loads to issue call ``c`` on ``cc``'s architecture, e.g. ``rax = 0x50560020``."""
    fid = cc.function_id(c.fn)
    if cc.extra_id_register is not None:
        ext = EXTENSION_IDS[cc.arch]
        return f"{cc.extra_id_register} = {hx(ext, 8)}, {cc.function_id_register} = {hx(fid, 2)}"
    return f"{cc.function_id_register} = {hx(fid, 8)}"


def _block(ctx: Ctx, header: str | None, entry: str | None, max_batch: int | None) -> str:
    if header is None:
        return "none (the register is reserved, must be zero)"
    h = layout(header)
    text = f"[{code(h.c_name)}]({ctx.format_link(h.name)}), {h.size} bytes"
    if entry is None:
        return text
    e = layout(entry)
    if max_batch is None:  # not a batch: a whole page of records (EVENT_FETCH)
        page = int(Limit.PAGE_SIZE)
        return (
            f"a whole {page}-byte page: [{code(h.c_name)}]({ctx.format_link(h.name)}) followed by `count` × "
            f"[{code(e.c_name)}]({ctx.format_link(e.name)}), at most {(page - h.size) // e.size} of them"
        )
    most = h.size + max_batch * e.size
    return (
        f"[{code(h.c_name)}]({ctx.format_link(h.name)}) followed by `count` × "
        f"[{code(e.c_name)}]({ctx.format_link(e.name)}): {h.size} + {e.size} × count bytes "
        f"(at most {most} bytes with the call's `max_batch` of {max_batch} entries)"
    )


def register_rows(c: CallDef) -> list[list[str]]:
    """Rows register | one column per architecture | meaning, for call ``c``."""
    rows = []
    for i, meaning in enumerate(c.args):
        regs = [code(cc.argument_registers[i]) for cc in CONVENTIONS]
        rows.append([f"arg{i}", *regs, escape_plain(meaning)])
    rows.append(["status", *[code(cc.status_register) for cc in CONVENTIONS], "signed status"])
    rows.append(["value", *[code(cc.value_register) for cc in CONVENTIONS], escape_plain(c.value)])
    return rows


def check_rows(ctx: Ctx, name: str) -> list[list[str]]:
    """Rows step | scope | check | status | requirement | writes of call ``name``'s check order (spec/checks.py)."""
    rows: list[list[str]] = []
    for i, chk in enumerate(CHECKS[name], 1):
        link = ctx.requirement_link(chk.requirement)
        if link is None:
            raise DocsError(f"{ctx.page}: check {name}/{chk.key} cites unknown requirement {chk.requirement}")
        rows.append(
            [
                str(i),
                chk.scope,
                md_text(chk.check, ctx.requirement_link),
                code(chk.status.name),
                f"[{chk.requirement}]({link})",
                md_text(chk.writes, ctx.requirement_link),
            ]
        )
    return rows


def render_call(ctx: Ctx, name: str) -> str:
    c = call_def(name)
    ids = "; ".join(f"{ARCH_TITLES[cc.arch]} {code(function_id_text(cc, c))}" for cc in CONVENTIONS)
    props = [
        ["Function number", f"{code(hx(int(c.fn), 2))} ({code(c.c_name)})"],
        ["Function id", ids],
        ["Valid in the VM states", ", ".join(code(st.value) for st in c.states) + " (else WRONG_STATE)"],
        ["Input block (arg0)", _block(ctx, c.input, c.input_entry, c.max_batch)],
        ["Output block (arg1)", _block(ctx, c.output, c.output_entry, c.max_batch)],
        ["Value register", escape_plain(c.value)],
    ]
    if c.max_batch is not None:
        props.append(
            [
                "Largest batch (`max_batch`)",
                f"{c.max_batch} entries ({code(c.c_max_batch)}): what one page holds "
                f"([batch limits]({ctx.section_link('batch')}#batch-limits))",
            ]
        )
    blocks = (c.input, c.input_entry, c.output, c.output_entry)
    # a format named by a plain word ("event") would match prose: only names like deactivate_entry count,
    formats = [b for b in blocks if b is not None and "_" in b]
    # and as prose names them: activate_entry is "activate entry", alloc_entry "allocate entry"
    spoken = [f.replace("_", " ").replace("alloc ", "allocate ") for f in formats]
    props.append(["Requirements", render_governing(ctx, c.name, *formats, *spoken)])
    arch_cols = [ARCH_TITLES[cc.arch] for cc in CONVENTIONS]
    return "\n".join(
        [
            f'<div class="pvmsi-call" id="{call_anchor(c.name)}" markdown="1">',
            "",
            f"**{code(c.name)}**: {md_text(c.doc)}",
            "",
            table(["Property", "Value"], props),
            "",
            table(["Register", *arch_cols, "Meaning"], register_rows(c)),
            "",
            f"Check order of {code(c.name)} (the first check that fails decides the status; "
            f"[status codes]({ctx.section_link('status')}#check-order)):",
            "",
            table(["Step", "Where", "Fails when", "Status", "Requirement", "Writes"], check_rows(ctx, c.name)),
            "",
            "</div>",
        ]
    )


def render_function_ids(ctx: Ctx) -> str:
    """Every call with its function number and per-architecture function id."""
    rows = []
    for c in CALLS:
        rows.append(
            [
                f"[{code(c.name)}]({ctx.call_link(c.name)})",
                code(hx(int(c.fn), 2)),
                *[code(function_id_text(cc, c)) for cc in CONVENTIONS],
                ", ".join(st.value for st in c.states),
            ]
        )
    header = ["Call", "Number", *[ARCH_TITLES[cc.arch] for cc in CONVENTIONS], "Valid in"]
    return table(header, rows)


def render_calls_summary(ctx: Ctx) -> str:
    """Every call: number, input, output, description."""
    rows = []
    for c in CALLS:
        inp = "-" if c.input is None else code(c.input + (f" + {c.input_entry}[count]" if c.input_entry else ""))
        out = "-" if c.output is None else code(c.output + (f" + {c.output_entry}[count]" if c.output_entry else ""))
        rows.append([f"[{code(c.name)}]({ctx.call_link(c.name)})", code(hx(int(c.fn), 2)), inp, out, md_text(c.doc)])
    return table(["Call", "Number", "Input", "Output", "Description"], rows)


_CC_ROWS: Sequence[tuple[str, str]] = (
    ("Trap instruction", "instruction"),
    ("Function id register", "function_id_register"),
    ("Function id", "function_id_encoding"),
    ("Extension id register", "extra_id_register"),
    ("arg0", "0"),
    ("arg1", "1"),
    ("arg2", "2"),
    ("arg3", "3"),
    ("Status register", "status_register"),
    ("Value register", "value_register"),
    ("Returns", "returns"),
    ("Preserved", "preserved"),
)


def _cc_cell(cc: CallingConvention, key: str) -> str:
    if key.isdigit():
        return code(cc.argument_registers[int(key)])
    if key == "instruction":
        return ", ".join(code(i) for i in cc.instruction)
    if key == "extra_id_register":
        return "-" if cc.extra_id_register is None else code(cc.extra_id_register)
    value = getattr(cc, key)
    assert isinstance(value, str)
    return code(value) if key.endswith("register") else escape_plain(value)


def render_callconv_table() -> str:
    """All architectures side by side."""
    rows = [[label, *[_cc_cell(cc, key) for cc in CONVENTIONS]] for label, key in _CC_ROWS]
    return table(["", *[ARCH_TITLES[cc.arch] for cc in CONVENTIONS]], rows)


def render_discovery(arch: str) -> str:
    cc = convention(arch)
    return "\n".join(f"{i}. {md_text(step.text())}" for i, step in enumerate(cc.discovery, 1))


_SBI_NAMES = {v: k for k, v in vars(SbiError).items() if k.isupper()}


def render_sbiret() -> str:
    """riscv64: the sbiret of each pvmsi status (spec/callconv.py SBI_ERROR_OF_STATUS)."""
    rows = [[code("SUCCESS, INCOMPLETE"), code("SBI_SUCCESS (0)"), "the call's value"]]
    for status in Status:
        if status in SBI_ERROR_OF_STATUS:
            err = SBI_ERROR_OF_STATUS[status]
            rows.append(
                [code(status.name), code(f"SBI_ERR_{_SBI_NAMES[err]} ({err})"), f"the status, {code(str(int(status)))}"]
            )
    return table(["pvmsi status", "sbiret.error (a0)", "sbiret.value (a1)"], rows)


def render_x86_paths() -> str:
    """x86-64: the values of CPUID(base + 1).EBX (spec/callconv.py X86_PATH_DOCS)."""
    return table(["EBX", "Path"], [[code(str(v)), md_text(doc)] for v, doc in X86_PATH_DOCS.items()])


def render_callconv_arch(arch: str) -> str:
    """One architecture: its registers, its function-id encoding (with a bit diagram) and its discovery steps."""
    cc = convention(arch)
    rows = [[label, _cc_cell(cc, key)] for label, key in _CC_ROWS]
    return "\n\n".join(
        [
            table(["", ARCH_TITLES[cc.arch]], rows),
            render_register(f"function-id-{cc.arch}"),
            "Discovery:",
            render_discovery(arch),
        ]
    )


# --- state machines -----------------------------------------------------------------------------------------


def machine(name: str) -> StateMachine[Enum, Enum]:
    for m in MACHINES:
        if m.name == name:
            return m  # type: ignore[return-value]
    raise DocsError(f"unknown state machine {name!r} (known: {', '.join(m.name for m in MACHINES)})")


def _states(m: StateMachine[Enum, Enum]) -> list[Enum]:
    seen: list[Enum] = [m.initial]
    for t in m.transitions:
        for s in (t.state, t.next):
            if s not in seen:
                seen.append(s)
    return seen


def _events(m: StateMachine[Enum, Enum]) -> list[Enum]:
    seen: list[Enum] = []
    for t in m.transitions:
        if t.event not in seen:
            seen.append(t.event)
    return seen


def mermaid_state_diagram(m: StateMachine[Enum, Enum]) -> str:
    """A Mermaid ``stateDiagram-v2`` of ``m``, one edge per (state, next) pair, events joined."""
    edges: dict[tuple[str, str], list[str]] = {}
    for t in m.transitions:
        edges.setdefault((t.state.name, t.next.name), []).append(str(t.event.value))
    lines = ["```mermaid", "stateDiagram-v2", f"    [*] --> {m.initial.name}"]
    for (a, b), events in edges.items():
        label = ", ".join(e.replace(":", " ") for e in events)
        lines.append(f"    {a} --> {b} : {label}")
    lines.append("```")
    return "\n".join(lines)


def transition_rows(m: StateMachine[Enum, Enum]) -> list[Transition[Enum, Enum]]:
    return list(m.transitions)


def render_state_machine(ctx: Ctx, name: str) -> str:
    """Transition table, state/event matrix and Mermaid diagram, all from the same spec table."""
    m = machine(name)
    rows = [
        [code(t.state.name), escape_plain(str(t.event.value)), code(t.next.name), escape_plain(t.effect)]
        for t in m.transitions
    ]
    events = _events(m)
    matrix = []
    for s in _states(m):
        cells = []
        for e in events:
            nxt = m.next_state(s, e)
            cells.append("not allowed" if nxt is None else code(nxt.name))
        matrix.append([code(s.name), *cells])
    return "\n".join(
        [
            f'<div class="pvmsi-machine" id="{machine_anchor(m.name)}" markdown="1">',
            "",
            f"Initial state: {code(m.initial.name)}.",
            "",
            table(["State", "Event", "Next state", "Effect"], rows),
            "",
            table(["State \\ event", *[escape_plain(str(e.value)) for e in events]], matrix),
            "",
            m.refused,
            "",
            mermaid_state_diagram(m),
            "",
            "</div>",
        ]
    )
