"""The report's HTML page: parts and figures in, one document out, with the script that draws
the figures and, on the live dashboard, refreshes them.

A page is ``PageParts``: its body's HTML, in which every element whose id is in ``parts`` is a
part the live dashboard refreshes (``innerHTML``), and ``figures`` (plotly figures by the id of
the ``div`` they are drawn in, without their template: the page carries the template once). The
page embeds the figures as JSON (``<script type="application/json" id="serendip-data">``) and
draws them with ``Plotly.newPlot``. Given ``refresh_seconds`` and a ``data_url``, it fetches the
data document (``data_document``: parts and figures) every ``refresh_seconds`` and applies it:
``innerHTML`` for the parts, ``Plotly.react`` for the figures. When the set of parts or figures
changed (a new policy, the first decisions), it reloads itself. ``body[data-refreshes]`` counts
the refreshes applied.

plotly.js is either inlined (``plotly_src=None``: a file that needs no network) or loaded from
``plotly_src`` (the live dashboard's cached script).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

TEMPLATE = "plotly_white"
CONFIG = {"displaylogo": False, "responsive": True}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.7rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
section.policy { border-top: 2px solid #ddd; margin-top: 2rem; }
.algorithm { font-size: 0.9rem; font-weight: normal; color: #555; }
.verdict { padding: 0.6rem 0.8rem; border-left: 6px solid #999; background: #f6f6f6;
  margin: 0.5rem 0 1rem; max-width: 1200px; }
.verdict .sentence { font-size: 1.05rem; }
.verdict .advice { margin: 0.4rem 0 0; color: #444; font-size: 0.9rem; }
.badge { display: inline-block; padding: 0.1rem 0.6rem; border-radius: 1rem; color: #fff;
  font-weight: 600; text-transform: uppercase; font-size: 0.8rem; letter-spacing: 0.03em; }
.badge.tone-good { background: #2e7d32; } .verdict.tone-good { border-color: #2e7d32; }
.badge.tone-bad { background: #c62828; } .verdict.tone-bad { border-color: #c62828; }
.badge.tone-warn { background: #ef8f00; } .verdict.tone-warn { border-color: #ef8f00; }
.badge.tone-wait { background: #757575; } .verdict.tone-wait { border-color: #757575; }
td.queue-ok { background: #e3f4e3; } td.queue-bad { background: #fbe1dd; }
td.queue-slow { background: #fff1d6; } td.queue-unknown { color: #888; }
.ok { color: #2e7d32; } .bad { color: #c62828; } .slow { color: #a86400; }
.serendip-plot { border: 1px solid #eee; padding: 0.5rem; margin: 1rem 0; max-width: 1200px; }
.caption, .notes, .legend, .latency { color: #555; font-size: 0.9rem; }
"""
SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById("serendip-data").textContent);
  var body = document.body;
  function draw(figures, first) {
    Object.keys(figures).forEach(function (id) {
      var element = document.getElementById(id);
      if (!element) { return; }
      var figure = figures[id], layout = figure.layout || {};
      layout.template = data.template;
      (first ? Plotly.newPlot : Plotly.react)(element, figure.data, layout, data.config);
    });
  }
  function keys(object) { return Object.keys(object).sort().join("\\n"); }
  function status(text) {
    var element = document.getElementById("refresh-status");
    if (element) { element.textContent = text; }
  }
  function apply(update) {
    if (keys(update.parts) !== data.parts.slice().sort().join("\\n") ||
        keys(update.figures) !== keys(data.figures)) {
      window.location.reload();
      return;
    }
    Object.keys(update.parts).forEach(function (id) {
      document.getElementById(id).innerHTML = update.parts[id];
    });
    draw(update.figures, false);
    body.dataset.refreshes = String(Number(body.dataset.refreshes || 0) + 1);
    status("");
  }
  draw(data.figures, true);
  var seconds = Number(body.dataset.refresh || 0);
  if (!seconds || !window.fetch) { return; }
  window.setInterval(function () {
    fetch(body.dataset.source, {cache: "no-store"})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(apply)
      .catch(function (error) { status("Refresh failed (" + error.message + "); trying again."); });
  }, seconds * 1000);
})();
"""


@dataclass
class PageParts:
    """A page's body, its refreshable parts (id -> inner HTML) and its figures (div id -> JSON)."""

    body: str
    parts: dict[str, str] = field(default_factory=dict)
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    style: str = ""

    def part(self, element_id: str, inner: str, tag: str = "div", css: str = "") -> str:
        """Register ``inner`` as the part ``element_id``; return its element's HTML."""
        self.parts[element_id] = inner
        classes = f' class="{css}"' if css else ""
        return f'<{tag} id="{html.escape(element_id)}"{classes}>{inner}</{tag}>'


def figure_json(figure: go.Figure) -> dict[str, Any]:
    """``figure`` as JSON-able data and layout, without its template (the page has it once)."""
    document: dict[str, Any] = json.loads(pio.to_json(figure, validate=False))
    document.get("layout", {}).pop("template", None)
    return {"data": document.get("data", []), "layout": document.get("layout", {})}


@cache
def template_json() -> dict[str, Any]:
    """The plotly template every figure of the page is drawn with."""
    figure = go.Figure(layout={"template": TEMPLATE})
    found: dict[str, Any] = json.loads(pio.to_json(figure, validate=False))["layout"]["template"]
    return found


def data_document(parts: PageParts, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the live page fetches at each refresh: its parts and figures (and ``extra``)."""
    return {**(extra or {}), "parts": parts.parts, "figures": parts.figures}


def _script_json(value: Any) -> str:
    # Inside <script>, "</script>" or "<!--" in a string would end or change the element.
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def render(
    title: str,
    parts: PageParts,
    *,
    plotly_src: str | None = None,
    refresh_seconds: int | None = None,
    data_url: str = "",
) -> str:
    """The whole page; plotly.js inlined unless ``plotly_src``; refreshing from ``data_url``
    every ``refresh_seconds`` when both are given."""
    from plotly.offline import get_plotlyjs

    if plotly_src is None:
        plotly = (
            "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
            f'<script type="text/javascript">{get_plotlyjs()}</script>'
        )
    else:
        plotly = f'<script src="{html.escape(plotly_src)}"></script>'
    refresh = ""
    if refresh_seconds and data_url:
        refresh = f' data-refresh="{refresh_seconds}" data-source="{html.escape(data_url)}"'
    embedded = {
        "template": template_json(),
        "config": CONFIG,
        "figures": parts.figures,
        "parts": sorted(parts.parts),
    }
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}{parts.style}</style>{plotly}</head>"
        f'<body data-refreshes="0"{refresh}><h1>{html.escape(title)}</h1>{parts.body}'
        '<p class="notes" id="refresh-status"></p>'
        f'<script type="application/json" id="serendip-data">{_script_json(embedded)}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def plain_page(title: str, body: str) -> str:
    """A page without scripts or figures (the report of an empty log)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )
