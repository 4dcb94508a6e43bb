"""The HTML report: one self-contained page, the gate table, the flips as embedded thumbnails."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

from PIL import Image

from edgemine.scenarios.reports import render_html
from edgemine.scenarios.results import Flip, GateReport
from tests.support.gate_reports import gate_report, scenario


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buf, "JPEG")
    return buf.getvalue()


class _Collect(HTMLParser):
    """Every tag with its attributes, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Collect:
    parser = _Collect()
    parser.feed(page)
    return parser


def test_html_embeds_flip_thumbnails_regressed_first_with_their_ids(mixed_report: GateReport) -> None:
    thumbs = {"night/r1.png": _jpeg((255, 0, 0)), "fixed/a.png": _jpeg((0, 255, 0))}
    asked: list[str] = []

    def thumbnail(image_id: str) -> bytes | None:
        asked.append(image_id)
        return thumbs.get(image_id)

    page = render_html(mixed_report, thumbnail)
    parsed = _parse(page)
    images = [attrs for tag, attrs in parsed.tags if tag == "img"]
    assert [a["alt"] for a in images] == ["night/r1.png", "fixed/a.png"]  # r2 has no thumbnail
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/jpeg;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    text = " ".join(parsed.text)
    # regressed flips come before fixed ones, each captioned with its id; the missing thumbnail is said
    assert text.index("night/r1.png") < text.index("night/r2.png") < text.index("fixed/a.png")
    assert "no thumbnail" in text
    assert sorted(set(asked)) == ["fixed/a.png", "night/r1.png", "night/r2.png"]
    assert "ped-night" in text and "FAIL" in text and "0.700 [0.650, 0.750]" in text


def test_html_page_loads_nothing_from_outside(mixed_report: GateReport) -> None:
    page = render_html(mixed_report, lambda _id: _jpeg((1, 2, 3)))
    parsed = _parse(page)
    for tag, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith(("data:", "#")), (tag, name, value)
        assert tag not in ("script", "link", "iframe")
    assert re.search(r"Content-Security-Policy[^>]*default-src 'none'", page)


def test_html_escapes_ids_and_reasons() -> None:
    evil_id = '"><script>alert(1)</script>.png'
    report = gate_report([scenario("ped-night", "FAIL", reason="<img src=x onerror=alert(2)>",
                                   flips=[Flip(evil_id, "regressed")])])
    page = render_html(report, lambda _id: None)
    assert "<script>" not in page and "<img src=x" not in page
    parsed = _parse(page)
    assert evil_id in " ".join(parsed.text)


def test_html_shows_at_most_max_flips_and_says_how_many_more() -> None:
    flips = [Flip(f"r{i}.png", "regressed") for i in range(7)] + [Flip("f.png", "fixed")]
    report = gate_report([scenario("ped-night", "FAIL", flips=flips)])
    asked: list[str] = []
    page = render_html(report, lambda i: asked.append(i) or _jpeg((9, 9, 9)), max_flips=5)
    assert asked == [f"r{i}.png" for i in range(5)]  # only what is shown is decoded
    assert "5 of 8 flips shown" in " ".join(_parse(page).text)


def test_html_ignores_thumbnail_bytes_that_are_not_an_image() -> None:
    report = gate_report([scenario("ped-night", "FAIL", flips=[Flip("a.png", "regressed")])])
    page = render_html(report, lambda _id: b"<html>not an image</html>")
    assert not [a for tag, a in _parse(page).tags if tag == "img"]
    assert "no thumbnail" in page
