"""The library report of ``mer-live label --report report.html``: one self-contained HTML file.

Everything is inline (SVG, CSS, a small sorting script), so it opens from disk, offline, and can
be mailed as it is: the Russell plane with one mark per song (name and numbers on hover), the
quadrant counts, a sortable table with each song's segment timeline, and the files that failed.
Every user string (paths, error messages) is escaped; nothing is fetched from anywhere.

Built for big libraries: a mark is one ``<circle>`` with its ``<title>``, a timeline two polylines
of at most ``TIMELINE_POINTS`` points (longer songs are averaged into that many bins), coordinates
in whole units, and the table's rows render only as they scroll into view
(``content-visibility``). 10,000 songs make a file of a few MB that opens in a second or two.
"""

from __future__ import annotations

import datetime as _dt
import html
import os

import numpy as np

from mer_live.atomic import atomic_write_text
from mer_live.stats import QUADRANTS

TIMELINE_POINTS = 24  # per task per song: enough to see a song move, small at 10,000 songs
PLANE = 440  # px, the Russell plane's side
MARGIN = 36
COLORS = {"Q1": "#d99400", "Q2": "#d62728", "Q3": "#1f77b4", "Q4": "#2ca02c"}
TIMELINE_W, TIMELINE_H = 120, 26
INLINE_TIMELINES = 2000  # songs; above, timelines are drawn as their rows come into view


def _text(value) -> str:
    """A user string as HTML text: undecodable bytes of a file name shown as U+FFFD, never as markup."""
    text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return html.escape(text, quote=True)


def _display_names(rows: list[dict]) -> tuple[list[str], str]:
    """Paths relative to the folder they share (the full path stays in the hover text)."""
    paths = [str(r["path"]) for r in rows]
    root = ""
    if len(paths) > 1:
        try:
            root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
        except ValueError:
            root = ""
    if root in ("", os.sep):
        return paths, ""
    return [os.path.relpath(os.path.abspath(p), root) for p in paths], root


def _bins(values: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` points: the mean of each of ``n`` equal runs of segments."""
    if len(values) <= n:
        return values
    edges = np.arange(n + 1) * len(values) // n
    return np.add.reduceat(values, edges[:-1]) / np.diff(edges)


def _polyline(values: list[float], css: str) -> str:
    points = _bins(np.asarray(values, np.float64), TIMELINE_POINTS)
    if len(points) == 1:
        points = np.repeat(points, 2)
    x = np.rint(np.arange(len(points)) * (TIMELINE_W / (len(points) - 1))).astype(int)
    y = np.rint(1 + (1 - np.clip(points, 0, 1)) * (TIMELINE_H - 2)).astype(int)
    return f'<polyline class="{css}" points="{" ".join(f"{a},{b}" for a, b in zip(x.tolist(), y.tolist()))}"/>'


def _values(cell) -> list[float]:
    """A segment column: a list (JSON rows), a space-separated string (CSV rows read back), or none."""
    if cell is None or cell == "":
        return []
    return [float(x) for x in (cell.split() if isinstance(cell, str) else cell)]


LEVELS = "0123456789abcdefghijklmnopqrstuvwxyz"  # a point as one character: 36 levels on a 26 px line


def _code(values: list[float]) -> str:
    points = _bins(np.asarray(values, np.float64), TIMELINE_POINTS)
    return "".join(LEVELS[i] for i in np.rint(np.clip(points, 0, 1) * (len(LEVELS) - 1)).astype(int).tolist())


def _timeline(row: dict, inline: bool) -> str:
    """Inline SVG; or, in a big report, the points as characters that the script draws when the row
    scrolls into view (a tenth of the bytes, and no 20,000 SVG elements to lay out on opening)."""
    valence, arousal = _values(row.get("segment_valence")), _values(row.get("segment_arousal"))
    if not valence:
        return '<span class="dim">-</span>'
    if not inline:
        return f'<svg class="tl" data-tl="{_code(valence)} {_code(arousal)}"></svg>'
    return (f'<svg class="tl" viewBox="0 0 {TIMELINE_W} {TIMELINE_H}">'  # the 0.5 line is the svg's CSS background
            f'{_polyline(valence, "v")}{_polyline(arousal, "a")}</svg>')


def _plane(good: list[tuple[int, dict, str]]) -> str:
    side, m = PLANE, MARGIN
    half = side // 2
    parts = [f'<svg id="plane" viewBox="0 0 {side + 2 * m} {side + 2 * m + 14}" width="{side + 2 * m}" '
             f'height="{side + 2 * m + 14}" role="img" aria-label="songs on the Russell plane">']
    for q, (x, y) in {"Q2": (m, m), "Q1": (m + half, m), "Q3": (m, m + half), "Q4": (m + half, m + half)}.items():
        parts.append(f'<rect x="{x}" y="{y}" width="{half}" height="{half}" fill="{COLORS[q]}" opacity=".08"/>')
    parts.append(f'<rect x="{m}" y="{m}" width="{side}" height="{side}" class="frame"/>'
                 f'<line x1="{m + half}" y1="{m}" x2="{m + half}" y2="{m + side}" class="frame"/>'
                 f'<line x1="{m}" y1="{m + half}" x2="{m + side}" y2="{m + half}" class="frame"/>')
    labels = (("Q2", m, m - 8, "start"), ("Q1", m + side, m - 8, "end"),  # outside the frame: marks go to the corners
              ("Q3", m, m + side + 18, "start"), ("Q4", m + side, m + side + 18, "end"))
    for q, x, y, anchor in labels:
        parts.append(f'<text x="{x}" y="{y}" text-anchor="{anchor}" fill="{COLORS[q]}">{q} {QUADRANTS[q]}</text>')
    parts.append(f'<text x="{m + half}" y="{side + 2 * m + 8}" text-anchor="middle">valence: P(high) 0 &#8594; 1'
                 f'</text><text x="12" y="{m + half}" text-anchor="middle" transform="rotate(-90 12 {m + half})">'
                 'arousal: P(high) 0 &#8594; 1</text>')
    radius = 4 if len(good) <= 500 else 2.5  # a big library is a cloud: smaller marks, less overlap
    parts.append('<g id="marks">')
    for _, row, name in good:  # in row order: the n-th mark is the table's row n (the click handler counts on it)
        v, a, q = float(row["valence"]), float(row["arousal"]), row["quadrant"]
        parts.append(f'<circle class="{q}" cx="{m + v * side:.0f}" cy="{m + (1 - a) * side:.0f}" r="{radius}">'
                     f'<title>{name}&#10;valence {v:.2f}, arousal {a:.2f}, {q}</title></circle>')
    parts.append("</g></svg>")
    return "".join(parts)


def _counts(good: list[tuple[int, dict, str]], failed: int) -> str:
    total = max(1, len(good))
    lines = ['<table class="counts"><thead><tr><th>quadrant</th><th>songs</th><th>share</th></tr></thead><tbody>']
    for q in ("Q1", "Q2", "Q3", "Q4"):
        n = sum(1 for _, row, _ in good if row["quadrant"] == q)
        lines.append(f'<tr><td><i class="dot {q}"></i>{q} {QUADRANTS[q]}</td>'
                     f'<td class="num" id="count-{q}">{n}</td><td class="num">{100 * n / total:.1f} %</td></tr>')
    lines.append(f'<tr><td>labeled</td><td class="num">{len(good)}</td><td></td></tr>'
                 f'<tr><td>failed</td><td class="num">{failed}</td><td></td></tr></tbody></table>')
    return "".join(lines)


def _table(good: list[tuple[int, dict, str]]) -> str:
    inline = len(good) <= INLINE_TIMELINES
    head = ('<table id="songs" class="sortable"><thead><tr><th data-type="num">#</th><th data-type="text">song</th>'
            '<th data-type="num">duration s</th><th data-type="num">valence</th><th data-type="num">arousal</th>'
            '<th data-type="text">quadrant</th><th>segments: <span class="v">valence</span> '
            '<span class="a">arousal</span></th></tr></thead><tbody>')
    body = []
    for i, row, name in good:
        q = row["quadrant"]
        v, a = float(row["valence"]), float(row["arousal"])
        duration = float(row["duration_s"] or 0)
        body.append(f'<tr id="r{i}"><td>{i}</td><td>{name}</td><td>{duration:.1f}</td><td>{v:.3f}</td><td>{a:.3f}'
                    f'</td><td><i class="dot {q}"></i>{q} {QUADRANTS[q]}</td><td>{_timeline(row, inline)}</td></tr>')
    return head + "".join(body) + "</tbody></table>"


def _failed(rows: list[tuple[dict, str]]) -> str:
    if not rows:
        return ""
    items = "".join(f'<li><code>{_text(row["path"])}</code>: {_text(row["error"])}</li>' for row, _ in rows)
    return f'<h2 id="failed">Failed files ({len(rows)})</h2><ul class="failed">{items}</ul>'


STYLE = """
body{margin:0;padding:20px 28px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d232b;
background:#fafbfc}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px}.dim,.meta{color:#66707c}
.top{display:flex;gap:32px;flex-wrap:wrap;align-items:flex-start}#plane text{font-size:12px;fill:#66707c}
#plane .frame{fill:none;stroke:#c3c9d0}#marks circle{fill-opacity:.6;stroke:#fff;stroke-width:.5}
#marks circle:hover{fill-opacity:1;stroke:#000;r:7}.Q1{fill:#d99400;background:#d99400}
.Q2{fill:#d62728;background:#d62728}.Q3{fill:#1f77b4;background:#1f77b4}.Q4{fill:#2ca02c;background:#2ca02c}
#songs{font-variant-numeric:tabular-nums}#songs td{max-width:420px;overflow-wrap:anywhere}
table{border-collapse:collapse}th,td{padding:3px 8px;text-align:left;border-bottom:1px solid #e3e6ea}
th{position:sticky;top:0;background:#eef1f4}th[data-type]{cursor:pointer}th[data-type]:hover{background:#dde3ea}
th.asc::after{content:" \\2191"}th.desc::after{content:" \\2193"}
.num{text-align:right;font-variant-numeric:tabular-nums}/* per-cell selectors (nth-child) would slow a big sort */
#songs tbody tr{content-visibility:auto;contain-intrinsic-size:auto 33px}#songs tbody tr:target{background:#fff3c4}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;
margin-right:6px}.tl{display:block;width:120px;height:26px;
background:linear-gradient(#d3d8de,#d3d8de) 0 50%/100% 1px no-repeat}
.tl polyline{fill:none;stroke-width:1.5}polyline.v{stroke:#e8840c}polyline.a{stroke:#8a4fd8}span.v{color:#e8840c}
span.a{color:#8a4fd8}ul.failed li{margin:3px 0}
code{background:#eef1f4;padding:0 3px;border-radius:3px;overflow-wrap:anywhere}
"""

# Sorting: click a heading (again: the other way). Numbers sort as numbers; 10,000 rows in a blink.
SCRIPT = """
document.querySelectorAll("table.sortable th[data-type]").forEach((th) => th.addEventListener("click", () => {
  const table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex, num = th.dataset.type === "num";
  const dir = th.classList.contains("asc") ? -1 : 1;
  table.querySelectorAll("th").forEach((h) => h.classList.remove("asc", "desc"));
  th.classList.add(dir === 1 ? "asc" : "desc");
  const key = (tr) => { const td = tr.cells[col], t = td.dataset.sort || td.textContent;
    return num ? parseFloat(t) : t.toLowerCase(); };
  const rows = Array.from(body.rows, (tr) => [key(tr), tr]);
  rows.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0) * dir);
  const out = document.createDocumentFragment();
  rows.forEach((r) => out.appendChild(r[1]));
  body.appendChild(out);
}));
const LEVELS = "0123456789abcdefghijklmnopqrstuvwxyz", NS = "http://www.w3.org/2000/svg";
function draw(svg) {  // a big report's timeline: characters -> two polylines
  svg.setAttribute("viewBox", "0 0 120 26");
  svg.dataset.tl.split(" ").forEach((code, k) => {
    const line = document.createElementNS(NS, "polyline"), step = 120 / Math.max(1, code.length - 1);
    line.setAttribute("class", k ? "a" : "v");
    line.setAttribute("points", Array.from(code.length > 1 ? code : code + code, (c, i) =>
      Math.round(i * step) + "," + Math.round(1 + (1 - LEVELS.indexOf(c) / 35) * 24)).join(" "));
    svg.appendChild(line);
  });
  svg.removeAttribute("data-tl");
}
const lazy = document.querySelectorAll("svg[data-tl]");
if (lazy.length) {
  const seen = new IntersectionObserver((entries) => entries.forEach((e) => {
    if (e.isIntersecting) { seen.unobserve(e.target); draw(e.target); } }), {rootMargin: "400px"});
  lazy.forEach((svg) => seen.observe(svg));
}
const marks = document.getElementById("marks");
marks?.addEventListener("click", (e) => {
  const mark = e.target.closest("circle");
  if (mark) location.hash = "r" + ([...marks.children].indexOf(mark) + 1);
});
"""


def render(rows: list[dict], model: str = "", created: str | None = None) -> str:
    """The report for ``mer-live label`` rows (``result_row``, with the segment columns where there are)."""
    names, root = _display_names(rows) if rows else ([], "")
    good = [(row, _text(name)) for row, name in zip(rows, names) if not row.get("error")]
    good = [(k, row, name) for k, (row, name) in enumerate(good, 1)]  # k: the row's number, its mark's place
    failed = [(row, name) for row, name in zip(rows, names) if row.get("error")]
    created = created or _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    where = f" in <code>{_text(root)}</code>" if root else ""
    meta = (f'{len(good)} songs labeled{where}, {len(failed)} failed' + (' (<a href="#failed">list</a>)' if failed
            else "") + f"; model <code>{_text(model)}</code>; {created}. valence and arousal: the probability (0-1) "
            "that the song is high in valence / arousal, high at 0.5; the quadrant is Russell's: Q1 +V+A, Q2 -V+A, "
            "Q3 -V-A, Q4 +V-A. Hover a mark for its song; click it for its row; click a heading to sort.")
    return "".join([
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mer-live report: {len(good)} songs</title><style>{STYLE}</style></head><body>",
        f'<h1>mer-live library report</h1><p class="meta">{meta}</p>',
        f'<div class="top">{_plane(good)}<div><h2>Quadrants</h2>{_counts(good, len(failed))}</div></div>',
        f"<h2>Songs ({len(good)})</h2>", _table(good), _failed(failed),
        f"<script>{SCRIPT}</script></body></html>\n",
    ])


def write_report(path: str | os.PathLike, rows: list[dict], model: str = "") -> None:
    """``render`` into ``path``, atomically (a kill leaves the old report or the new one)."""
    atomic_write_text(path, render(rows, model))
