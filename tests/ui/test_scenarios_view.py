"""The review page's Scenarios view in a real browser (issue 9): per-scenario verdicts beside the aggregate,
flips as thumbnails with "mine more like these", and saving the mining query as a scenario.

The bundle of tests/ui/conftest.py gets ground truth on its first LABELED images and predictions of
v7 and v8 (tests/support/scenario_data.py: v8 better overall, wrong on every `night` image); the
scenarios lie in ./scenarios of the server's working directory (the default folder).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live_server import serving
from tests.support.scenario_data import ScenarioData, add_scenario_data
from tests.ui.conftest import TIMES_OF_DAY, _require_browser, build_bundle

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LABELED = 24  # images with ground truth; the other 16 stay unlabeled, so mining finds candidates


@pytest.fixture
def served_scenarios(tmp_path: Path) -> Iterator[tuple[str, list[str], ScenarioData]]:
    """A real `edgemine serve` over a bundle with ground truth, two models and two locked scenarios."""
    _require_browser()
    bundle, ids = build_bundle(tmp_path)
    tods = [TIMES_OF_DAY[i % 3] for i in range(len(ids))]
    data = add_scenario_data(bundle, ids[:LABELED], tods[:LABELED], tmp_path / "scenarios", tmp_path)
    with serving(bundle, tmp_path, name="serve-scenarios") as url:
        yield url, ids, data


def test_scenarios_view_verdicts_flips_mine_more_and_save_query(served_scenarios: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    url, ids, data = served_scenarios
    js_errors: list[str] = []
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda e: js_errors.append(str(e)))
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")

    # The table: aggregate first, then each scenario with its verdict against the preselected baseline.
    page.click(".view-tab[data-view=scenarios]")
    expect(page.locator("#scenarios-view")).to_be_visible()
    expect(page.locator("#mine-view")).to_be_hidden()
    expect(page.locator("#eval-model")).to_have_value("v8")
    expect(page.locator("#eval-baseline")).to_have_value("v7")
    night = page.locator("#scenario-rows tr[data-name=night]")
    expect(night.locator(".verdict")).to_have_text("FAIL")
    expect(page.locator("#scenario-rows tr[data-name=day] .verdict")).to_have_text("PASS")
    expect(page.locator("#eval-status")).to_contain_text("gate fail")
    expect(page.locator("#eval-status")).not_to_contain_text("null")
    expect(night.locator(".n")).to_have_text(str(len(data.night)))
    expect(night.locator(".value")).to_have_text("0.000")
    expect(night.locator(".baseline")).to_have_text("1.000")
    expect(night.locator(".drop")).to_have_text("1.000")
    aggregate = page.locator("#scenario-rows tr").first
    expect(aggregate).to_have_attribute("data-name", "all labeled")
    expect(aggregate.locator(".n")).to_have_text(str(LABELED))
    v8, v7 = (float(x) for x in (aggregate.locator(".value").inner_text(), aggregate.locator(".baseline").inner_text()))
    assert v8 > v7  # better overall, worse on the night scenario

    # Without a baseline: the model's figures only, no verdicts.
    page.select_option("#eval-baseline", "")
    page.click("#eval-btn")
    expect(night.locator(".verdict")).to_have_text("\u2013")  # an en dash: no verdict
    expect(night.locator(".value")).to_have_text("0.000")
    page.select_option("#eval-baseline", "v7")
    page.click("#eval-btn")
    expect(night.locator(".verdict")).to_have_text("FAIL")

    # The flips of the failing scenario as thumbnails; "mine more like these" mines with them.
    night.locator("button.show-flips").click()
    flips = page.locator("#flips-grid .flip.regressed")
    expect(flips).to_have_count(len(data.regressed))
    assert sorted(flips.evaluate_all("els => els.map(e => e.dataset.id)")) == data.regressed
    page.wait_for_function("[...document.querySelectorAll('#flips-grid img')].every(i => i.naturalWidth > 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "scenarios-view.png"), full_page=True)
    page.click("#mine-flips")
    expect(page.locator("#mine-view")).to_be_visible()
    expect(page.locator(".example.pos")).to_have_count(len(data.regressed))
    unlabeled = len(ids) - LABELED  # the labeled images (the flips among them) are not candidates
    expect(page.locator("#grid .card")).to_have_count(unlabeled)
    expect(page.locator("#query-examples .chip.pos")).to_have_count(len(data.regressed))
    sent = json.loads(page.locator("#query-json").text_content() or "{}")
    assert sorted(sent["positive_ids"]) == data.regressed
    shown = set(page.locator("#grid .card .cid").all_inner_texts())
    assert shown == set(ids[LABELED:])

    # Save this query as a scenario: named in a prompt, then listed in the Scenarios view.
    page.once("dialog", lambda dialog: dialog.accept("night-like"))
    page.click("#save-scenario")
    expect(page.locator("#notice.success")).to_contain_text("Saved scenario night-like")
    assert (data.folder / "night-like.yaml").is_file() and (data.folder / "night-like.lock.json").is_file()
    page.click("#notice button:has-text('Show scenarios')")
    saved = page.locator("#scenario-rows tr[data-name=night-like]")
    expect(saved.locator(".lock")).to_have_text("fresh")
    # Members: the query's candidates over every labeling state (k=50 covers the bundle) and its examples.
    expect(saved).to_contain_text(f"{LABELED} / {len(ids)}")
    assert not js_errors, js_errors
    with httpx.Client(base_url=url, trust_env=False) as api:
        listed = {s["name"] for s in api.get("/v1/scenarios").json()}
    assert listed == {"day", "night", "night-like"}
