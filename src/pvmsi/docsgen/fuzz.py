"""The Performance page's fuzzing results, rendered at build time from the committed outputs of
``pvmsi fuzz --inputs 1000000 --seed 1 -j 2 --json`` (docs/assets/fuzz.json) and of
``pvmsi fuzz --check-faults --inputs 100000 --seed 1 -j 2 --json docs/assets/fuzz-faults.json``, never typed
by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .context import DocsError

#: The recorded run, within the site's docs folder:
#: ``pvmsi fuzz --inputs 1000000 --seed 1 -j 2 --json > docs/assets/fuzz.json``.
FUZZ_JSON = Path("assets") / "fuzz.json"
#: The faulty hypervisors fuzzed:
#: ``pvmsi fuzz --check-faults --inputs 100000 --seed 1 -j 2 --json docs/assets/fuzz-faults.json``.
FAULTS_JSON = Path("assets") / "fuzz-faults.json"

_EVENTS = (
    ("program_fire_delivered", "programmed messages fired and delivered as set"),
    ("forged_write", "forged writes blocked"),
    ("forged_pasid_write", "writes tagged with another sub-device's PASID blocked"),
    ("replay_write", "pairs replayed from another VM's device blocked"),
    ("flr", "FLRs"),
    ("migrate", "live migrations"),
    ("discovery", "discovery probes (CPUID leaves and the SBI probe)"),
    ("vm_reset", "VM resets"),
    ("hot_unplug", "hot-unplugs"),
    ("vm_destroy", "VM destructions"),
)


def load(path: Path) -> dict[str, Any]:
    try:
        report: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DocsError(f"cannot read the fuzzing report {path}: {exc}") from exc
    if "run" not in report:
        raise DocsError(f"{path} has no run metadata; record it with `pvmsi fuzz ... --json`")
    return report


def render_fuzz(path: Path) -> str:
    """One paragraph: what was run, the verdict, the statuses and the events."""
    r = load(path)
    run = r["run"]
    seeds = r.get("seeds") or [r.get("seed", run["seed"])]
    per_job = r["inputs"] // max(len(seeds), 1)
    verdict = "**no failure**" if r["ok"] else f"**{r['failures']:,} failure(s)**"
    statuses = ", ".join(f"{name} {n:,}" for name, n in sorted(r["statuses"].items(), key=lambda kv: -kv[1]))
    events = ", ".join(f"{r['events'].get(key, 0):,} {what}" for key, what in _EVENTS)
    live = r["events"].get("input_with_live_messages", 0)
    idle = r["events"].get("input_without_live_messages", 0)
    share = f" {100 * live / (live + idle):.0f}% of the inputs came from a VM holding live messages." if live else ""
    return (
        f"Result of a {r['inputs']:,}-input run (`--seed {run['seed']} -j {run['jobs']}`: seeds "
        f"{', '.join(str(s) for s in seeds)}, {per_job:,} inputs each, {r['elapsed_s']:.0f} s on {run['cpus']} CPUs "
        f"with Python {run['python']}, {run['date'][:10]}): {verdict}. Statuses returned: {statuses}. "
        f"Events: {events}.{share}"
    )


def render_fuzz_faults(path: Path) -> str:
    """One paragraph: how many faulty hypervisors the fuzzer caught, within how many inputs, and which it missed."""
    try:
        r: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DocsError(f"cannot read the faulty-hypervisor fuzzing report {path}: {exc}") from exc
    if not {"total", "caught", "missed", "faults", "inputs", "seed"} <= set(r):
        raise DocsError(f"{path} is not the output of `pvmsi fuzz --check-faults ... --json FILE`")
    slowest = max((f for f in r["faults"] if f["caught"]), key=lambda f: f["inputs"], default=None)
    missed = ", ".join(f"`{m}`" for m in r["missed"]) or "none"
    text = (
        f"Against the {r['total']} faulty hypervisors of the conformance suite, at most {r['inputs']:,} inputs each "
        f"from seed {r['seed']}: **{r['caught']} of {r['total']} caught** ({100 * r['caught'] / r['total']:.0f}%); "
        f"missed: {missed}."
    )
    if slowest is not None:
        text += f" The last to be caught, `{slowest['name']}`, took {slowest['inputs']:,} inputs."
    return text
