"""RowStates: per-query eligibility masks, cached until a label event changes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemine.bundle import images_sync
from edgemine.bundle.state import StateDB
from edgemine.service.row_states import RowStates


def states_of(tmp_path: Path, n: int = 8) -> tuple[RowStates, StateDB, list[str]]:
    ids = [f"img{i}" for i in range(n)]
    db = StateDB(tmp_path / "state.sqlite")
    images_sync.apply_upserts(db, [(i, f"{i}.png", "{}", r) for r, i in enumerate(ids)])
    return RowStates({i: r for r, i in enumerate(ids)}, db), db, ids


def test_masks_follow_label_events_and_match_the_codes(tmp_path: Path) -> None:
    states, db, ids = states_of(tmp_path)
    db.set_state(ids[:2], "labeled")
    db.set_state(ids[5:6], "queued")
    unlabeled, seq = states.eligible_at(["unlabeled"])
    assert unlabeled.tolist() == [False, False, True, True, True, False, True, True]
    both, _ = states.eligible_at(["unlabeled", "queued"])
    assert both.tolist() == [False, False, True, True, True, True, True, True]
    assert not states.eligible_at([])[0].any()
    # The cached mask is handed out again while nothing changed...
    again, seq_again = states.eligible_at(["unlabeled"])
    assert again is unlabeled and seq_again == seq
    # ...and rebuilt by the very next query after a label event (from any process).
    StateDB(tmp_path / "state.sqlite").set_state(ids[3:4], "labeled")
    after, seq_after = states.eligible_at(["unlabeled"])
    assert seq_after > seq and after.tolist() == [False, False, True, False, True, False, True, True]
    assert unlabeled.tolist()[3]  # the mask handed out before is not changed under its holder


def test_the_shared_mask_is_read_only_and_eligible_returns_a_private_copy(tmp_path: Path) -> None:
    states, _, _ = states_of(tmp_path)
    shared, _ = states.eligible_at(["unlabeled"])
    with pytest.raises(ValueError):
        shared[0] = False
    mine = states.eligible(["unlabeled"])
    mine &= np.zeros(len(mine), bool)  # browse() narrows its copy in place
    assert states.eligible_at(["unlabeled"])[0].all()


def test_image_urls_skip_quoting_only_where_quoting_changes_nothing() -> None:
    """The fast path for plain ids gives exactly what urllib's quote gives, for any id."""
    import random
    import string
    from urllib.parse import quote

    from edgemine.service.miner import image_url

    chars = string.printable + "é/ %~"
    rng = random.Random(0)
    for _ in range(5000):
        image_id = "".join(rng.choice(chars) for _ in range(rng.randint(0, 12)))
        assert image_url(image_id, "http://host/") == "http://host/v1/images/" + quote(image_id, safe="/")
    assert image_url("scene_01/cam-0.front~2.png") == "/v1/images/scene_01/cam-0.front~2.png"
