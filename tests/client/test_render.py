"""The notebook HTML of results, batches and tables: self-contained, escaped, bounded, honest about failures."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import edgemine
from edgemine.bundle.layout import ModelInfo
from edgemine.client.render import (
    GIVE_UP_AFTER,
    MAX_THUMBNAILS,
    Report,
    render_batch,
    render_mapping,
    render_result,
    render_table,
)
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index
from edgemine.service.batches import BatchItem
from edgemine.service.query import Candidate, MineResult, Timings

EVIL = '<script>alert("x")</script>&"\'.jpg'


def jpeg(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buf, format="JPEG")
    return buf.getvalue()


@dataclass
class FakeClient:
    """Serves a JPEG per id; ids in `fail` raise, ids in `junk` return bytes that are no image."""

    fail: dict[str, Exception] = field(default_factory=dict)
    junk: set[str] = field(default_factory=set)
    calls: list[tuple[str, int]] = field(default_factory=list)

    def thumbnail(self, image_id: str, size: int = 128) -> bytes:
        self.calls.append((image_id, size))
        if image_id in self.fail:
            raise self.fail[image_id]
        if image_id in self.junk:
            return b"<html>not found</html>"
        return jpeg()


@dataclass
class FakeResult:
    candidates: list[Candidate]
    result: MineResult
    client: FakeClient


@dataclass
class FakeBatch:
    batch_id: str
    name: str
    items: list[BatchItem]
    client: FakeClient


def candidate(i: int, image_id: str | None = None, nearest: str = "ex/pos1.jpg", **extra: Any) -> Candidate:
    fields: dict[str, Any] = dict(
        image_id=image_id or f"drive_{i % 3}/frame_{i:04d}.jpg", score=0.9 - i / 1000, rank=i + 1,
        nearest_example_id=nearest, nearest_example_similarity=0.8 - i / 1000,
        metadata={"time_of_day": "night", "sequence_id": f"drive_{i % 3}"}, state="unlabeled",
        image_url=f"/v1/images/{i}")
    fields.update(extra)
    return Candidate(**fields)


def mined(candidates: list[Candidate], client: FakeClient | None = None, cursor: str | None = "c1") -> FakeResult:
    model = MineResult(query_id="q-render", candidates=candidates, eligible=1234, offset=0, next_offset=len(candidates),
                       next_cursor=cursor, bundle_version=3, model="edgemine-tiny/none", strategy="max",
                       timings=Timings(total_ms=12.5))
    return FakeResult(candidates, model, client or FakeClient())


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text outside tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Tags:
    parser = Tags()
    parser.feed(page)
    parser.close()
    return parser


def assert_self_contained(page: str, extra_tags: frozenset[str] = frozenset()) -> None:
    """No script, no external reference of any kind: every src is a data URI, no href, no CSS url()/@import."""
    tags = parse(page)
    names = {tag for tag, _ in tags.tags}
    assert names <= {"div", "style", "h4", "small", "figure", "figcaption", "img", "b", "span",
                     "table", "thead", "tbody", "tr", "th", "td", *extra_tags}, names
    for tag, attrs in tags.tags:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
        assert "href" not in attrs and "srcset" not in attrs
        if "src" in attrs:
            assert (attrs["src"] or "").startswith("data:image/"), attrs["src"]
    css = "".join(re.findall(r"<style>(.*?)</style>", page, re.S))
    assert "url(" not in css and "@import" not in css
    assert "http://" not in page and "https://" not in page and "//" not in css


def data_images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)]


def test_result_renders_a_grid_with_rank_score_nearest_example_and_inlined_jpegs() -> None:
    result = mined([candidate(i) for i in range(5)])
    page = render_result(result)
    assert_self_contained(page)
    text = " ".join(parse(page).text)
    for c in result.candidates:
        assert f"#{c.rank}" in text and f"score {c.score:.4f}" in text and c.image_id in text
        assert f"{c.nearest_example_similarity:.3f} ≈ {c.nearest_example_id}" in text
    assert "5 candidates of 1234 eligible · ranks 1-5" in text and "edgemine-tiny/none" in text and "next_page" in text
    pictures = data_images(page)
    assert len(pictures) == 5 + 5  # one card each, and the (same) nearest example drawn beside each
    assert all(Image.open(io.BytesIO(p)).format == "JPEG" for p in pictures)
    # Each distinct id is fetched once, at the grid's size: the nearest example is cached.
    assert sorted(result.client.calls) == sorted({(c.image_id, 128) for c in result.candidates}
                                                 | {("ex/pos1.jpg", 128)})


def test_every_text_is_escaped_an_id_with_a_script_tag_stays_text() -> None:
    result = mined([candidate(0, image_id=EVIL, nearest=EVIL, metadata={EVIL: EVIL}, state=EVIL)],
                   FakeClient(fail={EVIL: ValueError(EVIL)}))
    for page in (render_result(result),
                 render_batch(FakeBatch(EVIL, EVIL, [BatchItem(image_id=EVIL, position=0, state=EVIL)],
                                        result.client)),
                 render_table([{EVIL: EVIL}], EVIL), render_mapping({EVIL: {EVIL: EVIL}}, EVIL)):
        assert "<script" not in page.lower()
        assert_self_contained(page)
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&quot;&#x27;.jpg" in page
        assert any(EVIL in t for t in parse(page).text)  # and reads back as the very same text


def test_text_prompt_and_upload_examples_are_labels_not_fetched() -> None:
    result = mined([candidate(0, nearest="text:pedestrian at night"), candidate(1, nearest="upload:f.jpg")])
    page = render_result(result)
    assert "≈ text:pedestrian at night" in page and "≈ upload:f.jpg" in page
    assert {i for i, _ in result.client.calls} == {c.image_id for c in result.candidates}


def test_thumbnails_are_bounded_and_the_rest_is_counted() -> None:
    result = mined([candidate(i) for i in range(MAX_THUMBNAILS + 15)])
    page = render_result(result)
    assert page.count('<figure class="em-card"') == MAX_THUMBNAILS
    assert f"15 more not shown (first {MAX_THUMBNAILS} of {MAX_THUMBNAILS + 15})" in page
    assert len(result.client.calls) == MAX_THUMBNAILS + 1  # the cards and the one nearest example
    small = render_result(mined([candidate(i) for i in range(10)]), max_thumbnails=4, size=64)
    assert small.count('<figure class="em-card"') == 4 and "6 more not shown" in small


def test_a_failed_or_bogus_thumbnail_shows_a_placeholder_naming_why() -> None:
    ids = [f"x/{i}.jpg" for i in range(4)]
    client = FakeClient(fail={ids[1]: FileNotFoundError("image file is missing: x/1.jpg")}, junk={ids[2]})
    page = render_result(mined([candidate(i, image_id=image_id) for i, image_id in enumerate(ids)], client))
    assert "no thumbnail: FileNotFoundError: image file is missing: x/1.jpg" in page
    assert "no thumbnail: ValueError: the thumbnail is not an image (22 bytes)" in page
    assert len(data_images(page)) == 2 + 4  # cards 0 and 3, and the nearest example beside each card


def test_after_repeated_failures_the_remaining_thumbnails_are_not_requested() -> None:
    class Down(Exception):
        pass

    cands = [candidate(i, nearest="text:night") for i in range(10)]
    client = FakeClient(fail={c.image_id: Down("service unavailable after 3 tries") for c in cands})
    page = render_result(mined(cands, client))
    assert len(client.calls) == GIVE_UP_AFTER
    text = " ".join(parse(page).text)
    assert text.count("no thumbnail: Down: service unavailable after 3 tries") == GIVE_UP_AFTER
    assert text.count(f"not fetched after {GIVE_UP_AFTER} failures in a row (Down: service unavailable") == 7
    assert page.count('<figure class="em-card"') == 10  # the cards are all there, with their text


def test_empty_result_says_so() -> None:
    page = render_result(mined([], cursor=None))
    assert "No candidates." in page and "last page" in page and "0 candidates of 1234 eligible" in page


def test_batch_renders_positions_states_and_provenance() -> None:
    items = [BatchItem(image_id="a.jpg", position=0, state="queued", score=0.71, nearest_example_id="p.jpg",
                       nearest_example_similarity=0.9),
             BatchItem(image_id="b.jpg", position=1, state="labeled")]  # queued by id: no score
    batch = FakeBatch("b-123", "night-crosswalk-1", items, FakeClient())
    page = render_batch(batch)
    assert_self_contained(page)
    text = " ".join(parse(page).text)
    assert "Batch night-crosswalk-1" in text and "(b-123)" in text and "2 images · 1 labeled, 1 queued" in text
    assert "#1" in text and "score 0.7100" in text and "0.900 ≈ p.jpg" in text and "#2" in text
    assert 'class="em-state em-state-queued"' in page and 'class="em-state em-state-labeled"' in page
    assert len(data_images(page)) == 3


def test_table_lists_the_union_of_columns_and_formats_cells() -> None:
    page = render_table([{"scenario": "night", "yield": 0.123456, "n": 3},
                         {"scenario": "rain", "extra": {"a": [1, 2]}, "n": None}], "Yield")
    assert_self_contained(page)
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    assert re.findall(r"<th>(.*?)</th>", rows[0]) == ["scenario", "yield", "n", "extra"]
    assert re.findall(r"<td[^>]*>(.*?)</td>", rows[1]) == ["night", "0.1235", "3", ""]
    assert re.findall(r"<td[^>]*>(.*?)</td>", rows[2]) == ["rain", "", "", "{&quot;a&quot;: [1, 2]}"]
    assert '<td class="em-num">3</td>' in page
    assert "No rows." in render_table([], "Empty")


def test_mapping_flattens_nested_reports_such_as_health() -> None:
    health = {"ready": True, "bundle_version": 2, "counts": {"images": 60, "unlabeled": 55}, "switch_error": None}
    page = render_mapping(health, "Health")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", page)
    assert list(zip(cells[::2], cells[1::2], strict=True)) == [
        ("ready", "True"), ("bundle_version", "2"), ("counts.images", "60"), ("counts.unlabeled", "55"),
        ("switch_error", "")]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_shown_not_crashed_on(value: float) -> None:
    assert f">{value}<" in render_table([{"v": value}], "t")


@pytest.fixture
def script_id_bundle(tmp_path: Path, make_images: Callable[..., list[str]]) -> tuple[Path, list[str]]:
    """A bundle (precomputed vectors) whose ids are HTML: `<script>...` and quotes, with real image files."""
    root = tmp_path / "images"
    files = make_images(root, 8, seed=2)
    ids = [f'<script>alert("{i}")</script>' if i % 2 else f'"><img src=x onerror=alert({i})>' for i in range(8)]
    vectors = np.random.default_rng(3).standard_normal((8, 16)).astype(np.float32)
    pq.write_table(pa.table({"image_id": ids, "path": [f"images/{f}" for f in files],
                             "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
                             "note": [f"<b>{i}</b>" for i in range(8)]}), tmp_path / "emb.parquet")
    choice = ModelChoice(ModelInfo(identity="byo:test", name="test", pretrained="external"), None)
    report = run_index(read_embeddings_source(tmp_path / "emb.parquet", image_root=root), tmp_path / "bundle",
                       choice, progress=False)
    assert report.published
    return tmp_path / "bundle", ids


def test_real_client_result_and_batch_html_escape_script_ids_and_inline_real_thumbnails(
        script_id_bundle: tuple[Path, list[str]]) -> None:
    bundle, ids = script_id_bundle
    with edgemine.open(bundle) as em:
        res = em.mine(positive_ids=[ids[0]], k=5)
        batch = em.queue(res, name="<script>batch</script>")
        for page in (res._repr_html_(), batch._repr_html_()):
            assert_self_contained(page)
            assert "<script" not in page and "<img src=x" not in page
            tags = parse(page)
            assert not any(a.startswith("on") for _, attrs in tags.tags for a in attrs)
            text = " ".join(tags.text)
            assert all(c.image_id in text for c in res.candidates)
            assert "no thumbnail" not in text
            # Five cards, each with the nearest example beside it: real thumbnails of the image files.
            assert len(data_images(page)) == 5 + 5
        assert "<script" not in batch._repr_html_() and "&lt;script&gt;batch&lt;/script&gt;" in batch._repr_html_()


def test_report_is_a_plain_dict_that_renders_as_a_table() -> None:
    report = Report({"ready": True, "counts": {"images": 60}}, "Health <b>")
    assert report == {"ready": True, "counts": {"images": 60}} and isinstance(report, dict)
    page = report._repr_html_()
    assert_self_contained(page)
    assert "<h4>Health &lt;b&gt;</h4>" in page and "<td>counts.images</td>" in page
