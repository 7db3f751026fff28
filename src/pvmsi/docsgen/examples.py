"""Worked examples whose every number is computed from spec/ (so they cannot drift from it)."""

from __future__ import annotations

from pvmsi.spec.calls import CALLS, LARGEST_BATCH, call
from pvmsi.spec.constants import Limit, Status

from .context import Ctx
from .formats import layout
from .markup import code, table


def status_text(s: Status) -> str:
    return f"{code(s.name)} ({int(s):+d})" if int(s) else f"{code(s.name)} (0)"


def render_batch_limits(ctx: Ctx) -> str:
    """Each batch call's ``max_batch``: what one page holds of its entries and of its results, the fewer."""
    page = int(Limit.PAGE_SIZE)
    rows = []
    for c in CALLS:
        if c.max_batch is None or c.input is None or c.input_entry is None or c.output is None:
            continue
        assert c.output_entry is not None
        hin, ein, hout, eout = (layout(n) for n in (c.input, c.input_entry, c.output, c.output_entry))
        rows.append(
            [
                f"[{code(c.name)}]({ctx.call_link(c.name)})",
                f"({page} − {hin.size}) ÷ {ein.size} = {(page - hin.size) // ein.size}",
                f"({page} − {hout.size}) ÷ {eout.size} = {(page - hout.size) // eout.size}",
                f"**{c.max_batch}** ({code(c.c_max_batch)})",
            ]
        )
    return (
        table(["Call", "entries a page holds (input)", "results a page holds (output)", "`max_batch`"], rows)
        + f"\n\n`hv_info.max_batch` is at least 1 and at most {LARGEST_BATCH} (the largest `max_batch` above)."
    )


def render_batch_example(ctx: Ctx) -> str:
    """A page-full ``MSG_ALLOC`` batch (``max_batch`` entries) that stops at entry 17, then resumes; and the error
    variant."""
    c = call("MSG_ALLOC")
    assert c.input is not None
    assert c.input_entry is not None
    assert c.output is not None
    assert c.output_entry is not None
    hin, ein = layout(c.input), layout(c.input_entry)
    hout, eout = layout(c.output), layout(c.output_entry)
    assert c.max_batch is not None
    n = c.max_batch
    stop = 17
    in_size = hin.size + n * ein.size
    out_size = hout.size + n * eout.size
    page = int(Limit.PAGE_SIZE)
    blocks = table(
        ["Block", "Layout", "Size", "Entry 17 at"],
        [
            [
                "input (`arg0`)",
                f"[{code(hin.c_name)}]({ctx.format_link(hin.name)}) + {n} × "
                f"[{code(ein.c_name)}]({ctx.format_link(ein.name)})",
                f"{hin.size} + {n} × {ein.size} = {in_size} bytes",
                f"byte {hin.size + stop * ein.size}",
            ],
            [
                "output (`arg1`)",
                f"[{code(hout.c_name)}]({ctx.format_link(hout.name)}) + {n} × "
                f"[{code(eout.c_name)}]({ctx.format_link(eout.name)})",
                f"{hout.size} + {n} × {eout.size} = {out_size} bytes",
                f"byte {hout.size + stop * eout.size}",
            ],
        ],
    )
    header = [
        "Call",
        "`start`",
        "status register",
        "value register",
        "`next_index`",
        "`completed`",
        "`batch_out.status`",
        "results written",
    ]
    ok, inc = Status.SUCCESS, Status.INCOMPLETE
    resumed = table(
        header,
        [
            ["1", "0", status_text(inc), str(stop), str(stop), str(stop), status_text(ok), f"0..{stop - 1}"],
            ["2", str(stop), status_text(ok), str(n), str(n), str(n - stop), status_text(ok), f"{stop}..{n - 1}"],
        ],
    )
    err = Status.NO_RESOURCES
    failed = table(
        header,
        [
            [
                "1",
                "0",
                status_text(err),
                str(stop),
                str(stop),
                str(stop),
                status_text(err),
                f"0..{stop} (result {stop}: {code(err.name)})",
            ],
            [
                "2 (after freeing elsewhere)",
                str(stop),
                status_text(ok),
                str(n),
                str(n),
                str(n - stop),
                status_text(ok),
                f"{stop}..{n - 1}",
            ],
        ],
    )
    return "\n\n".join(
        [
            f"The guest allocates {n} MSI-X vectors of one device with one `MSG_ALLOC` batch "
            f"(`count` = {n}, the call's `max_batch`: the most one page holds; a hypervisor's `hv_info.max_batch` "
            "may be lower). The blocks:",
            blocks,
            f"Each block lies within one {page}-byte page, so the input block starts at a page offset of at most "
            f"{page - in_size} and the output block at most {page - out_size}, both multiples of 8.",
            f"**Stopped early and resumed.** The hypervisor processes entries 0 to {stop - 1}, then returns to "
            "let the vCPU be preempted. The guest re-issues the same call with the same blocks, changing only "
            "`start`:",
            resumed,
            f"**Stopped by an error and resumed.** Entry {stop} hits the VM's message quota. Entries 0 to "
            f"{stop - 1} stay allocated; entries after {stop} are untouched and their results are not written. "
            f"The guest frees other messages it no longer needs (or gives up and frees entries 0 to {stop - 1}), "
            "then resumes:",
            failed,
        ]
    )
