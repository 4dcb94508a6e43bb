"""The review page: served by the service, and driven end to end in a real headless browser.

The browser tests use the `served` and `browser` fixtures of tests/ui/conftest.py (skipped without
chromium and playwright, unless EDGEMINE_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from edgemine.service.api.routes_ui import static_dir
from edgemine.service.app import create_app
from edgemine.service.config import Settings

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
N_IMAGES = 40  # tests/ui/conftest.py's bundle


# -- served assets ----------------------------------------------------------------------------------

def test_page_and_static_assets_are_served(tmp_path: Path) -> None:
    app = create_app(Settings(bundle=tmp_path / "no-bundle-needed"))
    client = TestClient(app)  # no lifespan: the page and its assets do not touch the bundle

    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<title>edgemine" in html
    assert '<script type="module" src="/static/app.js">' in html
    assert 'href="/static/style.css"' in html

    css = client.get("/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")

    # Every JS module, and every module it imports, is served as JavaScript.
    pending, seen = ["app.js"], set()
    while pending:
        name = pending.pop()
        seen.add(name)
        res = client.get(f"/static/{name}")
        assert res.status_code == 200, name
        assert "javascript" in res.headers["content-type"], (name, res.headers["content-type"])
        pending += [m for m in re.findall(r'from\s+"\./([\w.-]+\.js)"', res.text) if m not in seen]
    assert {"app.js", "api.js", "batches.js", "dom.js", "feedback.js", "filters.js", "results.js", "session.js"} <= seen

    assert client.get("/static/missing.js").status_code == 404
    # Not part of the HTTP API's schema.
    paths = app.openapi()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_static_files_make_no_external_requests() -> None:
    files = sorted(p for p in static_dir().iterdir() if p.is_file())
    assert {"index.html", "style.css", "app.js"} <= {p.name for p in files}
    for path in files:
        # The SVG namespace (document.createElementNS) is a name, never fetched.
        text = path.read_text(encoding="utf-8").replace('"http://www.w3.org/2000/svg"', '""')
        for url in re.findall(r"(?:https?:)?//[\w.-]+(?::\d+)?", text):
            host = url.split("//", 1)[1].split(":")[0]
            # `//` also starts JS comments ("// text"): only a host-like token counts.
            if "." in host or host == "localhost":
                assert host in ("localhost", "127.0.0.1"), f"{path.name} references another host: {url}"
        assert "@import" not in text, path.name
        for ref in re.findall(r"url\(([^)]*)\)", text):
            assert ref.strip("'\" ").startswith("data:"), f"{path.name}: url({ref})"


# -- end to end in a real browser -------------------------------------------------------------------

def test_review_page_end_to_end(served: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    url, ids, api = served.url, served.ids, served.api
    positives = [ids[0], ids[7]]
    ARTIFACTS.mkdir(exist_ok=True)
    # What the API itself returns for the query the page will send.
    expected = api.post("/v1/mine", json={"positive_ids": positives, "k": 50}).json()["candidates"]
    assert len(expected) == N_IMAGES - 2  # every other image is eligible and k=50 covers them

    foreign: list[str] = []
    js_errors: list[str] = []
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.set_default_timeout(10_000)
    page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else foreign.append(r.url))
    page.on("pageerror", lambda e: js_errors.append(str(e)))
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#health")).to_contain_text(f"{N_IMAGES} images")

    # Errors are explained: an empty query (422), then an unknown id (404 listing it).
    page.click("#mine-btn")
    expect(page.locator("#notice.error")).to_contain_text("empty query")
    page.fill("#ids-input", "seq99/nope.png")
    page.click("#ids-add")
    page.click("#mine-btn")
    expect(page.locator("#notice.error")).to_contain_text(
        "Unknown image ID (not in this bundle): seq99/nope.png")
    expect(page.locator(".example.unknown")).to_have_count(1)
    # The unknown ID is shown whole, with its flag: not cut by an ellipsis.
    label = page.locator(".example.unknown .ex-label")
    expect(label).to_contain_text("seq99/nope.png")
    assert label.evaluate("e => e.scrollWidth <= e.clientWidth && e.scrollHeight <= e.clientHeight")
    assert "unknown ID" in label.evaluate("e => getComputedStyle(e, '::after').content")
    page.click("#notice button:has-text('Remove unknown IDs')")
    expect(page.locator(".example")).to_have_count(0)
    # A filter value of the wrong type: the service's detail names the column.
    page.click("#mine-filters .add-filter")
    page.select_option("#mine-filters .f-col", "frame")
    page.select_option("#mine-filters .f-op", "gte")
    page.fill("#mine-filters .f-val", "soon")
    page.fill("#ids-input", positives[0])
    page.click("#ids-add")
    page.click("#mine-btn")
    expect(page.locator("#notice.error")).to_contain_text("filter on 'frame'")
    page.click("#mine-filters .filter-row button")

    # Pick the second example from the browsable, filterable list.
    page.click(".tab[data-tab=browse]")
    page.fill("#browse-contains", positives[1].split("/")[1])
    expect(page.locator("#browse-list .tile")).to_have_count(1)
    page.click(f"#browse-list .tile[data-id='{positives[1]}'] button.pos")
    expect(page.locator(".example.pos")).to_have_count(2)

    page.click("#mine-btn")
    cards = page.locator("#grid .card")
    expect(cards).to_have_count(len(expected))
    expect(page.locator("#query-examples .chip")).to_have_count(2)
    # The request popover opens inside the window.
    page.click(".query-json summary")
    box = page.locator("#query-json").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1366, box
    page.click(".query-json summary")
    shown = page.locator("#grid .card .cid").all_inner_texts()
    assert shown == [c["image_id"] for c in expected]
    expect(cards.nth(0).locator(".nearest-id")).to_have_text(expected[0]["nearest_example_id"])
    expect(cards.nth(0).locator("img").first).to_have_attribute("loading", "lazy")

    # Keyboard review: reject the first, accept the second (focus advances after each).
    cards.nth(0).locator(".info").click()
    page.keyboard.press("x")
    page.keyboard.press("a")
    expect(cards.nth(0)).to_have_class(re.compile(r"\brejected\b"))
    expect(cards.nth(1)).to_have_class(re.compile(r"\baccepted\b"))
    expect(cards.nth(2)).to_have_class(re.compile(r"\bfocused\b"))
    # Enlarge with metadata, then close.
    page.keyboard.press("Enter")
    expect(page.locator("#viewer")).to_be_visible()
    expect(page.locator("#viewer-meta")).to_contain_text("time_of_day")
    expect(page.locator("#viewer-meta")).to_contain_text(expected[2]["image_id"])
    # The full-size image, not an upscaled thumbnail (the scenes are 160x120).
    full = "/v1/images/" + expected[2]["image_id"]
    expect(page.locator("#viewer-img")).to_have_attribute("src", full)
    page.wait_for_function("document.querySelector('#viewer-img').naturalWidth === 160")
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()

    # Select all, invert (nothing), select all again, unselect the rejected one, accept the rest.
    page.click("#sel-all")
    page.click("#sel-invert")
    expect(page.locator("#grid .card.selected")).to_have_count(0)
    page.click("#sel-all")
    cards.nth(0).locator(".sel input").click()
    page.click("#sel-accept")
    expect(page.locator("#grid .card.accepted")).to_have_count(len(expected) - 1)
    expect(page.locator("#counts")).to_contain_text(f"{len(expected) - 1} accepted")
    # Every decision, bulk ones included, is stored as a verdict: the session's yield counts them all.
    expect(page.locator("#yield .y-reviewed")).to_have_text(f"{len(expected)} reviewed")
    page.screenshot(path=str(ARTIFACTS / "review-page.png"))

    rejected = expected[0]["image_id"]
    accepted = [c["image_id"] for c in expected[1:]]
    page.fill("#batch-name", "e2e night crosswalk")
    page.click("#queue-btn")
    notice = page.locator("#notice.success")
    expect(notice).to_contain_text(f"Queued {len(accepted)} images as batch “e2e night crosswalk”")
    expect(notice).to_contain_text(f"none of the {len(accepted)} queued images appear in the new results")
    # The re-run lists nothing: the accepted candidates are queued, the rejected one is left out
    # (its verdict was stored as it was given; tests/ui/test_review_feedback.py follows it further).
    expect(cards).to_have_count(0)
    batch_item = page.locator("#batch-list .batch").first
    expect(batch_item).to_contain_text("e2e night crosswalk")
    export_href = batch_item.locator("a.export-jsonl").get_attribute("href")
    assert batch_item.locator("a.export-labelstudio").count() == 1
    assert batch_item.locator("a.export-csv").count() == 1

    # Layouts: a laptop and a wide monitor, without horizontal scrolling.
    for width, height, min_cols in ((1366, 768, 4), (2560, 1440, 8)):
        page.set_viewport_size({"width": width, "height": height})
        cols = page.evaluate("getComputedStyle(document.querySelector('#grid')).gridTemplateColumns"
                             ".split(' ').length")
        assert cols >= min_cols, (width, cols)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.set_viewport_size({"width": 1366, "height": 768})
    page.screenshot(path=str(ARTIFACTS / "review-page-queued.png"))

    assert not js_errors, js_errors
    assert not foreign, f"the page requested other hosts: {foreign}"

    # Through the API: exactly the accepted candidates are queued, with their provenance.
    batches = api.get("/v1/batches").json()
    assert [b["name"] for b in batches] == ["e2e night crosswalk"]
    batch = api.get(f"/v1/batches/{batches[0]['batch_id']}").json()
    by_id = {c["image_id"]: c for c in expected}
    assert [i["image_id"] for i in batch["items"]] == accepted
    assert rejected not in {i["image_id"] for i in batch["items"]}
    for item in batch["items"]:
        assert item["state"] == "queued"
        assert item["score"] == pytest.approx(by_id[item["image_id"]]["score"])
        assert item["nearest_example_id"] == by_id[item["image_id"]]["nearest_example_id"]
    assert batch["query"]["positive_ids"] == positives
    assert "offset" not in batch["query"]
    counts = api.get("/v1/health").json()["counts"]
    assert counts["queued"] == len(accepted)
    assert export_href is not None
    lines = api.get(export_href).text.splitlines()
    assert sorted(json.loads(line)["image_id"] for line in lines) == sorted(accepted)


def test_review_page_with_an_api_key(served_with_key: Any, browser: Any) -> None:
    from playwright.sync_api import Dialog, Route, expect

    key = served_with_key.key

    url, ids = served_with_key.url, served_with_key.ids
    requested: list[str] = []
    js_errors: list[str] = []
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.set_default_timeout(10_000)
    page.on("request", lambda r: requested.append(r.url))
    page.on("pageerror", lambda e: js_errors.append(str(e)))
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")  # /v1/health is open

    # The first 401 asks for the key, once; a wrong key is refused and asked for again.
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#key-msg")).to_contain_text("requires an API key")
    page.fill("#key-input", "not-the-key")
    page.click("#key-submit")
    expect(page.locator("#key-msg")).to_contain_text("not accepted")
    page.fill("#key-input", key)
    page.click("#key-submit")
    expect(dialog).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('edgemine.apiKey')") == key
    expect(page.locator("#batches-msg")).to_contain_text("No batches yet")

    # Thumbnails load (with a read token, never the key).
    page.click(".tab[data-tab=browse]")
    tile = page.locator("#browse-list .tile img").first
    expect(tile).to_have_attribute("src", re.compile(r"[?&]token=\d+\.[0-9a-f]{64}$"))
    page.wait_for_function("document.querySelector('#browse-list .tile img').naturalWidth > 0")

    page.click(".tab[data-tab=ids]")
    page.fill("#ids-input", ids[0])
    page.click("#ids-add")
    page.click("#mine-btn")
    expect(page.locator("#grid .card")).to_have_count(N_IMAGES - 1)
    page.wait_for_function("document.querySelector('#grid .card img').naturalWidth > 0")
    page.locator("#grid .card .thumb").first.click()
    expect(page.locator("#viewer-img")).to_have_attribute("src", re.compile(r"^/v1/images/[^?]+\?token="))
    page.wait_for_function("document.querySelector('#viewer-img').naturalWidth === 160")
    page.keyboard.press("Escape")

    # Queue two, then "mark labeled" asks first: dismissed, nothing changes; accepted, labeled.
    cards = page.locator("#grid .card")
    cards.nth(0).locator(".act-accept").click()
    cards.nth(1).locator(".act-accept").click()
    page.fill("#batch-name", "keyed batch")
    page.click("#queue-btn")
    expect(page.locator("#notice.success")).to_contain_text("Queued 2 images")
    asked: list[str] = []

    def answer(accept: bool) -> Callable[[Dialog], None]:
        def handle(d: Dialog) -> None:
            asked.append(d.message)
            d.accept() if accept else d.dismiss()
        return handle

    page.once("dialog", answer(False))
    page.click("#batch-list .batch button:has-text('mark labeled')")
    expect(page.locator("#notice")).to_contain_text("left as it was")
    assert asked and "Mark all 2 images of batch “keyed batch” labeled?" in asked[0]
    assert served_with_key.api.get("/v1/health").json()["counts"]["labeled"] == 0
    page.once("dialog", answer(True))
    page.click("#batch-list .batch button:has-text('mark labeled')")
    expect(page.locator("#notice.success")).to_contain_text("Marked 2 images")
    assert served_with_key.api.get("/v1/health").json()["counts"]["labeled"] == 2
    export_href = page.locator("#batch-list a.export-jsonl").first.get_attribute("href")
    assert export_href is not None and "token=" in export_href

    # A reload in the same tab keeps the key: no prompt, thumbnails load.
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.fill("#ids-input", ids[0])
    page.click("#ids-add")
    page.click("#mine-btn")
    expect(page.locator("#grid .card").first).to_be_visible()
    page.wait_for_function("document.querySelector('#grid .card img').naturalWidth > 0")
    expect(dialog).to_be_hidden()
    expect(page.locator("#model-warning")).to_be_hidden()

    # Random weights (identity ".../none-seed0") are called out in a banner.
    def random_model(route: Route) -> None:
        body = route.fetch().json()
        route.fulfill(json={**body, "model": "ViT-B-32/none-seed0"})

    page.route("**/v1/health", random_model)
    page.reload()
    expect(page.locator("#model-warning")).to_be_visible()
    expect(page.locator("#model-warning")).to_contain_text("Random model weights")

    assert not js_errors, js_errors
    assert not [u for u in requested if key in u], "the API key appeared in a URL"
    export = served_with_key.api.get(export_href)
    assert export.status_code == 200 and len(export.text.splitlines()) == 2
    assert httpx.get(url + export_href.split("&token=")[0], trust_env=False).status_code == 401


def test_load_next_pages_by_cursor(served: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    url, ids, api = served.url, served.ids, served.api
    want = [c["image_id"] for c in api.post("/v1/mine", json={"positive_ids": [ids[0]], "k": 20}).json()["candidates"]]
    bodies: list[dict[str, object]] = []
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.set_default_timeout(10_000)
    page.on("request", lambda r: bodies.append(json.loads(r.post_data or "{}"))
            if r.url.endswith("/v1/mine") else None)
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.fill("#ids-input", ids[0])
    page.click("#ids-add")
    page.fill("#opt-k", "10")
    page.click("#mine-btn")
    expect(page.locator("#grid .card")).to_have_count(10)
    expect(page.locator("#load-more")).to_be_visible()
    page.click("#load-more")
    expect(page.locator("#grid .card")).to_have_count(20)
    labels = page.locator("#grid .card").evaluate_all("cards => cards.map(c => c.getAttribute('aria-label'))")
    assert labels == [f"rank {i + 1}: {image_id}" for i, image_id in enumerate(want)]
    assert "cursor" not in bodies[0] and bodies[1]["cursor"] and "offset" not in bodies[1]
    # A next page is the same query: the same session and parent (the cursor is bound to them).
    assert bodies[1]["session_id"] == bodies[0]["session_id"]
    assert bodies[1].get("parent_query_id") == bodies[0].get("parent_query_id")
