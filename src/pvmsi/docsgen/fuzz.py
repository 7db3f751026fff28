"""The Performance page's fuzzing result, rendered at build time from the committed output of
``pvmsi fuzz --inputs 1000000 --seed 1 -j 2 --json`` (docs/assets/fuzz.json), never typed by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .context import DocsError

#: The recorded run, within the site's docs folder:
#: ``pvmsi fuzz --inputs 1000000 --seed 1 -j 2 --json > docs/assets/fuzz.json``.
FUZZ_JSON = Path("assets") / "fuzz.json"

_EVENTS = (
    ("program_fire_delivered", "programmed messages fired and delivered as set"),
    ("forged_write", "forged writes blocked"),
    ("replay_write", "pairs replayed from another VM's device blocked"),
    ("flr", "FLRs"),
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
    return (
        f"Result of a {r['inputs']:,}-input run (`--seed {run['seed']} -j {run['jobs']}`: seeds "
        f"{', '.join(str(s) for s in seeds)}, {per_job:,} inputs each, {r['elapsed_s']:.0f} s on {run['cpus']} CPUs "
        f"with Python {run['python']}, {run['date'][:10]}): {verdict}. Statuses returned: {statuses}. "
        f"Events: {events}."
    )
