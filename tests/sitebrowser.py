"""Built site pages in headless Chromium, offline: what the reader sees once the page's scripts have run.

A copy of each page gets a probe script (the site itself carries none) that records, on ``<body>``: how many
Mermaid diagrams the page had, how many are still source and how many were drawn; every identifier in a table
cell that the layout split across two lines; every box whose content is wider than it (so clipped or hidden
behind a scroll bar), and whether the page scrolls sideways. Chromium resolves no host name, so a diagram drawn
is drawn by the script the site ships.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from ctoolchain import need

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no CDN, whatever the machine reaches
    "--virtual-time-budget=20000",
]

PROBE = """<script>
(function () {
  const started = Date.now();
  const diagrams = [...document.querySelectorAll("pre.mermaid")];  // tagged before the theme mounts them
  function textNodes(el) {
    const out = [], walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) out.push(n);
    return out;
  }
  function at(nodes, offset) {
    for (const n of nodes) { if (offset <= n.data.length) return [n, offset]; offset -= n.data.length; }
    const last = nodes[nodes.length - 1];
    return [last, last.data.length];
  }
  function splitWords(cell) {  // identifiers (letters, digits, _ and .) whose text lies on more than one line
    const nodes = textNodes(cell), text = nodes.map(n => n.data).join(""), out = [], re = /[A-Za-z0-9_.]{2,}/g;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      const r = document.createRange();
      r.setStart(...at(nodes, m.index));
      r.setEnd(...at(nodes, m.index + m[0].length));
      const lines = new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.bottom)));
      if (lines.size > 1) out.push(m[0]);
    }
    return out;
  }
  function finish() {
    const article = document.querySelector("article"), split = [], clipped = [];
    for (const cell of article.querySelectorAll("td, th")) split.push(...splitWords(cell));
    for (const el of article.querySelectorAll("*")) {
      const cell = el.tagName === "TD" || el.tagName === "TH";
      if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1
          && (cell || getComputedStyle(el).overflowX !== "visible")) {
        const what = `${el.tagName}.${el.className} ${el.scrollWidth} > ${el.clientWidth}`;
        clipped.push(`${what}: ${el.textContent.slice(0, 40)}`);
      }
    }
    const d = document.body.dataset;
    d.diagrams = String(diagrams.length);
    d.source = String(diagrams.filter(p => p.isConnected).length);
    d.drawn = String([...article.querySelectorAll("div.mermaid")].filter(e => e.offsetHeight > 40).length);
    d.split = JSON.stringify(split);
    d.clipped = JSON.stringify(clipped);
    d.sideways = String(document.documentElement.scrollWidth > window.innerWidth);
  }
  function poll() {
    if (diagrams.every(p => !p.isConnected) || Date.now() - started > 10000) setTimeout(finish, 200);
    else setTimeout(poll, 100);
  }
  window.addEventListener("load", () => setTimeout(poll, 100));
})();
</script>"""


def probe(page: Path, profile: Path, width: int = 1400) -> dict[str, Any]:
    """Load a probed copy of the built ``page`` (beside it, so its links resolve) at ``width`` pixels."""
    browser = need("chromium")
    copy = page.with_name("probe-" + page.name)
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        proc = subprocess.run(
            [browser, *FLAGS, f"--window-size={width},1000", f"--user-data-dir={profile}", "--dump-dom", copy.as_uri()],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        copy.unlink()
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body is not None, proc.stdout[:2000]
    data = {k: html.unescape(v) for k, v in re.findall(r'data-(\w+)="([^"]*)"', body.group(1))}
    assert "diagrams" in data, f"the probe did not finish: {data}"
    return {
        "diagrams": int(data["diagrams"]),
        "source": int(data["source"]),
        "drawn": int(data["drawn"]),
        "split": json.loads(data["split"]),
        "clipped": json.loads(data["clipped"]),
        "sideways": data["sideways"] == "true",
    }
