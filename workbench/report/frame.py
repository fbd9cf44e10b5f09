"""The page every report section writes into: an accumulator of HTML parts and figures
(plotly.js embedded once, in the first figure), and the page's template, style and script."""

from __future__ import annotations

import plotly.graph_objects as go


class Page:
    """Accumulates sections and figures; plotly.js goes into the first figure only."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures = 0

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def figure(self, fig: go.Figure) -> None:
        self.parts.append(fig.to_html(full_html=False, include_plotlyjs=self.figures == 0,
                                      config={"displaylogo": False, "responsive": True}))
        self.figures += 1

    def html(self, title: str) -> str:
        """The whole page: `title` (already escaped), every part, the sorting/filter script."""
        return TEMPLATE.format(title=title, figures=self.figures, body="\n".join(self.parts), script=SCRIPT)


SCRIPT = """
document.querySelectorAll('table.sortable th').forEach((th, i) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  const key = td => td.dataset.v !== undefined ? parseFloat(td.dataset.v) : td.textContent;
  [...body.rows].sort((a, b) => {
    const x = key(a.cells[i]), y = key(b.cells[i]);
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
  }).forEach(r => body.appendChild(r));
}));
const filter = document.getElementById('filter');
if (filter) filter.addEventListener('input', () => {
  const q = filter.value.toLowerCase();
  document.querySelectorAll('#trials tbody tr').forEach(r =>
    r.style.display = r.textContent.toLowerCase().includes(q) ? '' : 'none');
});
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="workbench-figures" content="{figures}">
<title>{title}: workbench report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }}
table.sortable th {{ cursor: pointer; background: #f4f4f4; position: sticky; top: 0; }}
table.kv th {{ color: #555; font-weight: normal; }}
.note {{ color: #555; font-style: italic; }} .warn {{ color: #a40; }}
.prediction {{ font-weight: bold; }} td.ok {{ color: #272; }} td.warn {{ color: #a40; }}
.answer {{ border-left: 4px solid #2a2; background: #f4fbf4; padding: 0.2em 1em; margin: 1em 0; }}
.answer.refused {{ border-color: #a40; background: #fbf6f2; }}
pre.sample {{ background: #f7f7f7; padding: 0.8em; white-space: pre-wrap; }}
table.examples td {{ vertical-align: top; max-width: 30em; }} table.examples pre.sample {{ margin: 0; }}
#filter {{ padding: 0.3em; width: 20em; }}
</style></head><body>
{body}
<script>{script}</script>
</body></html>
"""
