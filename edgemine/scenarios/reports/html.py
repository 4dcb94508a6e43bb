"""One self-contained HTML page of a gate run: the table, then per scenario its flips as embedded thumbnails.

No external asset (styles inline, images as data: URIs, a Content-Security-Policy forbidding any
fetch), so the page can be uploaded as a CI artifact and opened anywhere. Every text is escaped.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from html import escape

from edgemine.models.images import MEDIA_TYPES, sniff_format
from edgemine.scenarios.reports.text import table, warn_line
from edgemine.scenarios.results import Flip, GateReport, ScenarioGate

# Flips embedded per scenario (regressed first): a scenario with thousands of flips would make a
# page of tens of MB; the JSON report lists every flip.
MAX_FLIPS_SHOWN = 200

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .6rem}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.PASS{color:#1a7f37}.FAIL,.ERROR{color:#b3261e;font-weight:bold}.WARN,.INSUFFICIENT{color:#9a6700;font-weight:bold}
.flips{display:flex;flex-wrap:wrap;gap:.5rem}figure{margin:0;width:140px;font-size:.75rem;word-break:break-all}
figure img{display:block;max-width:128px;max-height:128px}figure.regressed{border-top:4px solid #b3261e}
figure.fixed{border-top:4px solid #1a7f37}.missing{width:128px;height:64px;background:#eee;color:#666;
display:flex;align-items:center;justify-content:center}
"""


def _data_uri(body: bytes | None) -> str | None:
    """Return a data: URI for image bytes, or None when they are not an image we know."""
    fmt = sniff_format(body[:16]) if body else None
    if fmt is None or body is None:
        return None
    return f"data:{MEDIA_TYPES[fmt]};base64,{base64.b64encode(body).decode('ascii')}"


def _table(report: GateReport) -> str:
    header, rows = table(report)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [f'<td class="{escape(row[1])}">{escape(row[1])}</td>' if i == 1 else
                 f'<td{" class=num" if 2 <= i < len(row) - 1 else ""}>{escape(c)}</td>' for i, c in enumerate(row)]
        cells[0] = f"<td>{escape(row[0])}</td>"
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(flip: Flip, thumbnail: Callable[[str], bytes | None]) -> str:
    uri = _data_uri(thumbnail(flip.image_id))
    name = escape(flip.image_id)
    picture = (f'<img src="{uri}" alt="{name}" title="{name}">' if uri
               else '<div class="missing">no thumbnail</div>')
    return (f'<figure class="{flip.direction}">{picture}'
            f"<figcaption>{flip.direction}: {name}</figcaption></figure>")


def _section(s: ScenarioGate, thumbnail: Callable[[str], bytes | None], max_flips: int) -> str:
    ordered = [f for f in s.flips if f.direction == "regressed"] + [f for f in s.flips if f.direction != "regressed"]
    shown = ordered[:max_flips]
    regressed, fixed = s.discordant
    parts = [f'<section id="scenario-{escape(s.name)}"><h2>{escape(s.name)}: '
             f'<span class="{escape(s.verdict)}">{escape(s.verdict)}</span></h2>',
             f"<p>{escape(s.reason)}</p>"]
    if s.verdict == "WARN":
        parts.append(f"<p>{escape(warn_line(s))}</p>")
    parts.append(f"<p>Flips: {regressed} regressed (right under the baseline, wrong under the candidate), "
                 f"{fixed} fixed.</p>")
    if not ordered:
        parts.append("<p>No flips.</p>")
    else:
        if len(shown) < len(ordered):
            parts.append(f"<p>{len(shown)} of {len(ordered)} flips shown (regressed first); "
                         "the JSON report lists them all.</p>")
        parts.append('<div class="flips">' + "".join(_figure(f, thumbnail) for f in shown) + "</div>")
    return "".join(parts) + "</section>"


def render_html(report: GateReport, thumbnail: Callable[[str], bytes | None], *,
                max_flips: int = MAX_FLIPS_SHOWN) -> str:
    """Return the gate run as one self-contained HTML page (thumbnails of up to `max_flips` flips per scenario)."""
    title = f"edgemine gate: {report.candidate} against {report.baseline}: {report.status.upper()}"
    hashes = "".join(f"<li><code>{escape(k)}</code>: <code>{escape(v)}</code></li>"
                     for k, v in sorted(report.hashes.items()))
    sections = "".join(_section(s, thumbnail, max_flips) for s in report.scenarios)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{escape(title)}</h1>{_table(report)}'
        "<p>p: one-sided test, Holm-adjusted across the run's scenarios; drop = baseline - candidate. "
        "To mine more images like a failed scenario's regressed flips: "
        "<code>edgemine gate ... --mine-flips FILE</code>, then POST FILE to /v1/mine.</p>"
        f"{sections}<h2>Hashes</h2><ul>{hashes}</ul><p>seed {report.seed}</p></body></html>\n"
    )
