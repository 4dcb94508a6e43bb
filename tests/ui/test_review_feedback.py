"""The review page's session: verdicts saved as given, kept across a reload, Refine, and the yield view.

Driven in headless chromium against a real `edgemine serve` (fixtures in tests/ui/conftest.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

SESSION_ID = re.compile(r"^s-[0-9a-f]{16}$")


def _open(browser: Any, url: str, bodies: list[dict[str, Any]], js_errors: list[str]) -> Any:
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.set_default_timeout(10_000)
    page.on("request", lambda r: bodies.append(json.loads(r.post_data or "{}"))
            if r.url.endswith("/v1/mine") else None)
    page.on("pageerror", lambda e: js_errors.append(str(e)))
    page.goto(url)
    return page


def _mine(page: Any, positive: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.fill("#ids-input", positive)
    page.click("#ids-add")
    page.click("#mine-btn")
    expect(page.locator("#grid .card").first).to_be_visible()


def _shown(page: Any) -> list[str]:
    return list(page.locator("#grid .card .cid").all_inner_texts())


def _latest_verdicts(api: Any, session_id: str) -> dict[str, tuple[str, str | None]]:
    page = api.get("/v1/verdicts", params={"session_id": session_id}).json()
    assert page["next_offset"] is None
    return {v["image_id"]: (v["verdict"], v["query_id"]) for v in page["verdicts"]}


def test_reject_reload_still_rejected_and_not_mined_again(served: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    url, ids, api = served.url, served.ids, served.api
    bodies: list[dict[str, Any]] = []
    js_errors: list[str] = []
    page = _open(browser, url, bodies, js_errors)
    _mine(page, ids[0])
    session_id = page.evaluate("sessionStorage.getItem('edgemine.sessionId')")
    assert SESSION_ID.match(session_id), session_id
    query_id = page.locator("#query-id").inner_text()
    assert query_id.startswith("q-")
    assert bodies[0]["session_id"] == session_id and "parent_query_id" not in bodies[0]
    assert "null" not in page.locator("#query-strip").inner_text()

    first = _shown(page)
    rejected, accepted, undone = first[0], first[1], first[2]
    cards = page.locator("#grid .card")
    # Keyboard: reject, accept, accept (focus moves on), back one, undo (stored as a skip).
    cards.nth(0).locator(".info").click()
    for key in ("x", "a", "a", "k", "u"):
        page.keyboard.press(key)
    expect(cards.nth(0)).to_have_class(re.compile(r"\brejected\b"))
    expect(cards.nth(1)).to_have_class(re.compile(r"\baccepted\b"))
    expect(cards.nth(2)).not_to_have_class(re.compile(r"\b(accepted|rejected)\b"))
    # The yield view follows the stored verdicts: the skip is no judgement.
    expect(page.locator("#yield .y-reviewed")).to_have_text("2 reviewed")
    expect(page.locator("#yield .y-yield")).to_have_text("50%")
    expect(page.locator("#session-pending")).to_be_hidden()

    # Stored as they were given, each with the query that produced the candidate.
    assert _latest_verdicts(api, session_id) == {
        rejected: ("reject", query_id), accepted: ("accept", query_id), undone: ("skip", query_id)}
    assert api.get("/v1/health").json()["counts"]["rejected"] == 1

    page.reload()
    expect(page.locator("body")).to_have_attribute("data-restored", "true")
    assert page.evaluate("sessionStorage.getItem('edgemine.sessionId')") == session_id
    expect(page.locator("#session-msg")).to_contain_text("Restored 2 verdicts")
    expect(page.locator("#yield .y-accepted")).to_have_text("1 accepted")
    expect(page.locator("#yield .y-rejected")).to_have_text("1 rejected")
    expect(page.locator("#yield .y-interval")).to_contain_text("95% interval")
    expect(page.locator("#yield svg.yield-curve polyline")).to_have_count(1)
    assert "null" not in page.locator("#session-panel").inner_text()

    # Mined again: the rejected image does not come back; the accepted one is still marked.
    _mine(page, ids[0])
    again = _shown(page)
    assert rejected not in again
    assert sorted(again) == sorted(set(first) - {rejected})
    expect(page.locator(f"#grid .card[aria-label$=': {accepted}']")).to_have_class(re.compile(r"\baccepted\b"))
    expect(page.locator("#grid .card.rejected")).to_have_count(0)
    assert bodies[-1]["session_id"] == session_id and bodies[-1]["parent_query_id"] == query_id

    # include_states brings rejected images back, marked as rejected.
    page.click("details.more summary")
    page.check("input[name=include-state][value=rejected]")
    page.click("#mine-btn")
    expect(page.locator("#grid .card")).to_have_count(len(first))
    expect(page.locator("#grid .card.rejected .cid")).to_have_text([rejected])
    assert bodies[-1]["include_states"] == ["unlabeled", "rejected"]
    assert not js_errors, js_errors


def test_refine_mines_with_accepted_as_positives_and_rejected_as_negatives(served: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    url, ids, api = served.url, served.ids, served.api
    bodies: list[dict[str, Any]] = []
    js_errors: list[str] = []
    page = _open(browser, url, bodies, js_errors)
    _mine(page, ids[0])
    expect(page.locator("#refine-btn")).to_be_disabled()
    first = _shown(page)
    cards = page.locator("#grid .card")
    cards.nth(0).locator(".info").click()
    for key in ("a", "a", "x", "x"):
        page.keyboard.press(key)
    refine = page.locator("#refine-btn")
    expect(refine).to_have_text("Refine (+2 / \u22122)")
    refine.click()
    expect(page.locator("#notice.success")).to_contain_text("Refined")
    sent = bodies[-1]
    session_id = page.evaluate("sessionStorage.getItem('edgemine.sessionId')")
    assert sent["use_verdicts"] is True and sent["session_id"] == session_id
    assert sent["positive_ids"] == [ids[0]] and sent["negative_ids"] == []
    expect(page.locator("#query-examples .chip.session")).to_contain_text("+ 2 accepted · \u2212 2 rejected (session)")
    expect(page.locator("#query-options")).to_contain_text("refined with the session's verdicts")
    assert "null" not in page.locator("#query-strip").inner_text()

    # The same as passing the session's verdicts by hand.
    by_hand = api.post("/v1/mine", json={
        "positive_ids": [ids[0], first[0], first[1]], "negative_ids": [first[2], first[3]], "k": 50,
    }).json()["candidates"]
    expect(cards).to_have_count(len(by_hand))
    assert _shown(page) == [c["image_id"] for c in by_hand]
    nearest = page.locator("#grid .card .nearest-id").all_inner_texts()
    assert nearest == [c["nearest_example_id"] for c in by_hand]
    assert not set(first[:4]) & set(_shown(page))

    # The accepted images are examples now, not candidates, and still to be queued.
    expect(page.locator("#queue-btn")).to_have_text("Queue 2 accepted")
    page.fill("#batch-name", "refined")
    page.click("#queue-btn")
    expect(page.locator("#notice.success")).to_contain_text("Queued 2 images")
    batch = api.get("/v1/batches").json()[0]
    items = api.get(f"/v1/batches/{batch['batch_id']}").json()["items"]
    assert sorted(i["image_id"] for i in items) == sorted(first[:2])
    assert batch["query"]["use_verdicts"] is True
    # The shortcut: `f` refines too, here with the learned ranking (strategy probe).
    page.select_option("#opt-strategy", "probe")
    page.locator("#grid .card .info").first.click()
    page.keyboard.press("f")
    expect(page.locator("#query-options")).to_contain_text("strategy probe")
    expect(page.locator("#notice.success")).to_contain_text("Refined")
    assert bodies[-1]["use_verdicts"] is True and bodies[-1]["strategy"] == "probe"
    expect(page.locator("#grid .card").first).to_be_visible()
    assert not js_errors, js_errors


def test_a_verdict_that_fails_to_save_is_kept_and_sent_on_retry(served: Any, browser: Any) -> None:
    from playwright.sync_api import Route, expect

    url, ids, api = served.url, served.ids, served.api
    bodies: list[dict[str, Any]] = []
    js_errors: list[str] = []
    page = _open(browser, url, bodies, js_errors)
    _mine(page, ids[0])
    session_id = page.evaluate("sessionStorage.getItem('edgemine.sessionId')")
    rejected = _shown(page)[0]

    def unavailable(route: Route) -> None:
        if route.request.method == "POST":
            route.fulfill(status=503, json={"detail": "state database busy"})
        else:
            route.continue_()

    page.route("**/v1/verdicts", unavailable)
    page.locator("#grid .card .act-reject").first.click()
    expect(page.locator("#notice.error")).to_contain_text("Saving verdicts failed")
    expect(page.locator("#session-pending")).to_contain_text("1 verdict not saved yet")
    assert _latest_verdicts(api, session_id) == {}

    page.unroute("**/v1/verdicts")
    page.click("#session-pending button:has-text('Retry')")
    expect(page.locator("#session-pending")).to_be_hidden()
    expect(page.locator("#notice.success")).to_contain_text("Verdicts saved")
    expect(page.locator("#banner")).to_be_hidden()
    expect(page.locator("#yield .y-rejected")).to_have_text("1 rejected")
    assert _latest_verdicts(api, session_id) == {rejected: ("reject", page.locator("#query-id").inner_text())}
    assert not js_errors, js_errors
