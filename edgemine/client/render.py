"""HTML for notebooks: mining results and batches as thumbnail grids, reports as small tables.

Every page is self-contained: inline CSS scoped to `.edgemine`, thumbnails inlined as base64 data
URIs, no script and no reference to any other host, so it renders offline and in a sanitising
viewer (GitHub, nbviewer) alike. All text (ids, metadata, names) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from edgemine.models.images import MEDIA_TYPES, sniff_format
from edgemine.service.batches import BatchItem
from edgemine.service.query import Candidate, MineResult

# A grid of 60 thumbnails at 128 px is ~300 KB of base64 in the notebook file: enough to judge a
# page by eye; the rest is counted, not shown (`.to_pandas()` lists everything).
MAX_THUMBNAILS = 60
THUMB_SIZE = 128
# Distinct nearest examples drawn as small thumbnails (a query may have up to 256 examples).
MAX_EXAMPLE_THUMBNAILS = 24
# After this many failures in a row (service down, image roots not mounted) stop asking: each
# fetch may itself retry with backoff, and a page of timeouts helps nobody.
GIVE_UP_AFTER = 3

_CSS = """
.edgemine{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:12px;color:#1d2330;
  background:#fff;padding:6px;border-radius:6px;max-width:100%}
.edgemine h4{margin:2px 0 6px;font-size:13px}
.edgemine .em-sum{color:#4a5263;margin-bottom:6px}
.edgemine .em-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
.edgemine .em-card{margin:0;border:1px solid #d6dae2;border-radius:5px;overflow:hidden;background:#f7f8fa}
.edgemine .em-thumb{display:flex;align-items:center;justify-content:center;aspect-ratio:4/3;background:#15181f}
.edgemine .em-thumb img{width:100%;height:100%;object-fit:cover;display:block}
.edgemine .em-missing{color:#f0c36a;padding:6px;font-size:11px;text-align:center;word-break:break-word}
.edgemine figcaption{padding:4px 6px;line-height:1.35}
.edgemine .em-top{display:flex;justify-content:space-between;font-variant-numeric:tabular-nums}
.edgemine .em-id{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;color:#2b3445}
.edgemine .em-near{display:flex;gap:4px;align-items:center;color:#4a5263;white-space:nowrap;overflow:hidden}
.edgemine .em-near img{width:32px;height:24px;object-fit:cover;border-radius:2px;flex:none}
.edgemine .em-sim{flex:none;font-variant-numeric:tabular-nums}
.edgemine .em-nid{overflow:hidden;text-overflow:ellipsis}
.edgemine .em-state{display:inline-block;padding:0 5px;border-radius:8px;background:#e3e7ee;font-size:11px}
.edgemine .em-state-queued{background:#fde9b8}.edgemine .em-state-labeled{background:#cdebd3}
.edgemine .em-more{margin-top:6px;color:#4a5263}
.edgemine table{border-collapse:collapse;font-variant-numeric:tabular-nums}
.edgemine th,.edgemine td{border:1px solid #d6dae2;padding:2px 8px;text-align:left;vertical-align:top}
.edgemine th{background:#eef1f5}.edgemine td.em-num{text-align:right}
"""


class ThumbnailSource(Protocol):
    """Anything that returns an image's thumbnail as encoded bytes (the client)."""

    def thumbnail(self, image_id: str, size: int = ...) -> bytes:
        """Return the thumbnail of `image_id`, at most `size` pixels on its long side."""
        ...


class ResultLike(Protocol):
    """What `render_result` reads from a mining result."""

    @property
    def candidates(self) -> Sequence[Candidate]:
        """The mined candidates, best first."""
        ...

    @property
    def result(self) -> MineResult:
        """The service's response model."""
        ...

    @property
    def client(self) -> ThumbnailSource:
        """Where thumbnails come from."""
        ...


class BatchLike(Protocol):
    """What `render_batch` reads from a batch."""

    @property
    def batch_id(self) -> str:
        """The batch's id."""
        ...

    @property
    def name(self) -> str:
        """The batch's name."""
        ...

    @property
    def items(self) -> Sequence[BatchItem]:
        """The queued images, in batch order."""
        ...

    @property
    def client(self) -> ThumbnailSource:
        """Where thumbnails come from."""
        ...


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(body: str) -> str:
    return f'<div class="edgemine"><style>{_CSS}</style>{body}</div>'


def page_html(body: str) -> str:
    """Wrap already-escaped HTML in the self-contained `.edgemine` block with its inline CSS."""
    return _page(body)


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or "no detail"
    return f"{type(exc).__name__}: {text[:200]}"


class _Thumbnails:
    """Fetches thumbnails as data URIs, once per id, and gives up after repeated failures."""

    def __init__(self, source: ThumbnailSource, size: int) -> None:
        self._source = source
        self._size = size
        self._cache: dict[str, str | Exception] = {}
        self._failures_in_row = 0
        self._gave_up: str | None = None

    def fetch(self, image_id: str) -> str | Exception:
        """Return a data URI for `image_id`, or the exception saying why there is none."""
        if image_id in self._cache:
            return self._cache[image_id]
        if self._gave_up is not None:
            return RuntimeError(f"not fetched after {GIVE_UP_AFTER} failures in a row ({self._gave_up})")
        try:
            data = self._source.thumbnail(image_id, self._size)
            kind = sniff_format(data[:16])
            if kind is None:
                raise ValueError(f"the thumbnail is not an image ({len(data)} bytes)")
            got: str | Exception = f"data:{MEDIA_TYPES[kind]};base64,{base64.b64encode(data).decode('ascii')}"
            self._failures_in_row = 0
        # Why broad: a thumbnail that cannot be had (missing file, 404, service down, bad bytes)
        # must not hide the whole result; the card shows the reason instead of the picture.
        except Exception as exc:
            got = exc
            self._failures_in_row += 1
            if self._failures_in_row >= GIVE_UP_AFTER:
                self._gave_up = _reason(exc)
        self._cache[image_id] = got
        return got

    def img(self, image_id: str) -> str:
        """Return an <img> for `image_id`, or a placeholder naming why there is no picture."""
        got = self.fetch(image_id)
        if isinstance(got, Exception):
            reason = _e(_reason(got))
            return f'<div class="em-missing" title="{reason}">no thumbnail: {reason}</div>'
        return f'<img src="{got}" alt="{_e(image_id)}">'


def _metadata_title(metadata: Mapping[str, Any]) -> str:
    return "\n".join(f"{key}: {_cell_text(value)}" for key, value in metadata.items())


def _nearest(example_id: str | None, similarity: float | None, thumbs: _Thumbnails, drawn: set[str]) -> str:
    if not example_id:
        return ""
    picture = ""
    # Text prompts and uploads are labels, not bundle images: there is nothing to fetch for them.
    is_image = not example_id.startswith(("text:", "upload:"))
    if is_image and (example_id in drawn or len(drawn) < MAX_EXAMPLE_THUMBNAILS):
        got = thumbs.fetch(example_id)
        if not isinstance(got, Exception):
            drawn.add(example_id)
            picture = f'<img src="{got}" alt="">'
    sim = "" if similarity is None else f"{similarity:.3f}"
    # The similarity first: a long id is cut by the card's width, the number must stay visible.
    return (f'<div class="em-near" title="nearest example: {_e(example_id)} (similarity {sim or "?"})">'
            f'{picture}<span class="em-sim">{sim}</span><span class="em-nid">≈ {_e(example_id)}</span></div>')


def _card(image_id: str, top_left: str, top_right: str, near: str, state: str,
          metadata: Mapping[str, Any], thumbs: _Thumbnails) -> str:
    return (f'<figure class="em-card" title="{_e(_metadata_title(metadata))}">'
            f'<div class="em-thumb">{thumbs.img(image_id)}</div><figcaption>'
            f'<div class="em-top"><b>{_e(top_left)}</b><span>{_e(top_right)}</span></div>'
            f'<div class="em-id" title="{_e(image_id)}">{_e(image_id)}</div>{near}'
            f'<span class="em-state em-state-{_e(state)}">{_e(state)}</span></figcaption></figure>')


def _more(total: int, shown: int, hint: str) -> str:
    if total <= shown:
        return ""
    return f'<div class="em-more">… {total - shown} more not shown (first {shown} of {total}); {_e(hint)}</div>'


def render_result(result: ResultLike, max_thumbnails: int = MAX_THUMBNAILS, size: int = THUMB_SIZE) -> str:
    """Return a mining result as self-contained HTML: a thumbnail grid with rank, score and nearest example."""
    res = result.result
    candidates = list(result.candidates)
    thumbs, drawn = _Thumbnails(result.client, size), set[str]()
    more_pages = "more: .next_page()" if res.next_cursor else "last page"
    ranks = f"ranks {candidates[0].rank}-{candidates[-1].rank} · " if candidates else ""
    summary = (f"{len(candidates)} candidates of {res.eligible} eligible · {ranks}query {res.query_id} · "
               f"strategy {res.strategy} · "
               f"model {res.model} · bundle v{res.bundle_version} · {res.timings.total_ms:.0f} ms · {more_pages}")
    cards = [
        _card(c.image_id, f"#{c.rank}", f"score {c.score:.4f}",
              _nearest(c.nearest_example_id, c.nearest_example_similarity, thumbs, drawn),
              c.state, c.metadata, thumbs)
        for c in candidates[:max_thumbnails]
    ]
    grid = f'<div class="em-grid">{"".join(cards)}</div>' if cards else "<div>No candidates.</div>"
    return _page(f"<h4>Mining result</h4><div class=\"em-sum\">{_e(summary)}</div>{grid}"
                 + _more(len(candidates), len(cards), "result.to_pandas() lists all"))


def render_batch(batch: BatchLike, max_thumbnails: int = MAX_THUMBNAILS, size: int = THUMB_SIZE) -> str:
    """Return a batch as self-contained HTML: its name and id above a thumbnail grid of its images."""
    items = list(batch.items)
    thumbs, drawn = _Thumbnails(batch.client, size), set[str]()
    states: dict[str, int] = {}
    for item in items:
        states[item.state] = states.get(item.state, 0) + 1
    summary = f"{len(items)} images · " + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    cards = [
        _card(item.image_id, f"#{item.position + 1}",
              "" if item.score is None else f"score {item.score:.4f}",
              _nearest(item.nearest_example_id, item.nearest_example_similarity, thumbs, drawn),
              item.state, item.metadata, thumbs)
        for item in items[:max_thumbnails]
    ]
    grid = f'<div class="em-grid">{"".join(cards)}</div>' if cards else "<div>No images.</div>"
    return _page(f"<h4>Batch {_e(batch.name)} <small>({_e(batch.batch_id)})</small></h4>"
                 f'<div class="em-sum">{_e(summary)}</div>{grid}'
                 + _more(len(items), len(cards), "batch.export(...) writes all"))


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def render_table(rows: Iterable[Mapping[str, Any]], title: str) -> str:
    """Return rows (dicts; columns in order of first appearance) as a small self-contained HTML table."""
    return _page(f"<h4>{_e(title)}</h4>{table_html(rows)}")


def table_html(rows: Iterable[Mapping[str, Any]]) -> str:
    """Return rows as a bare HTML table (escaped; to be placed inside a page of `render_table`'s style)."""
    rows = list(rows)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="em-num">{_e(_cell_text(row.get(c)))}</td>' if _is_number(row.get(c))
            else f"<td>{_e(_cell_text(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>" if rows else "<div>No rows.</div>"


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out += _flatten(value, f"{name}.")
        else:
            out.append({"field": name, "value": value})
    return out


def render_mapping(mapping: Mapping[str, Any], title: str) -> str:
    """Return a (nested) dict such as the health report as a two-column field/value table."""
    return render_table(_flatten(mapping), title)


class Report(dict[str, Any]):
    """A plain dict (a health or yield report) that Jupyter shows as a field/value table."""

    def __init__(self, data: Mapping[str, Any], title: str) -> None:
        """Copy `data`; `title` heads the table."""
        super().__init__(data)
        self.title = title

    def _repr_html_(self) -> str:
        return render_mapping(self, self.title)
