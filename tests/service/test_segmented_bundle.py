"""The service over a format-2 bundle: tombstoned rows (changed or pruned images) are never mined."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemine.bundle.snapshot import load_current
from tests.support.vec_bundle import build_vec_bundle, clustered


@pytest.mark.parametrize("with_prune", [False, True])
def test_changed_and_pruned_images_are_never_returned_with_their_old_rows(
        tmp_path: Path, open_client: Callable[..., Any], with_prune: bool) -> None:
    ids, X = clustered(n=60, near=4)
    bundle = tmp_path / "b"
    build_vec_bundle(bundle, ids, X)
    # im001 (a near-duplicate of im000) changes to a random vector: its old row is tombstoned.
    X2 = X.copy()
    X2[1] = np.random.default_rng(5).standard_normal(X.shape[1])
    keep = [i for i in range(60) if not (with_prune and i == 59)]  # the last: time_of_day does not shift
    built = build_vec_bundle(bundle, [ids[i] for i in keep], X2[keep], prune=with_prune)
    snap = load_current(bundle)
    assert len(snap.tombstones) == (2 if with_prune else 1) and len(snap.manifest.segments) == 2

    client = open_client(bundle)
    got = client.post("/v1/mine", json={"positive_ids": ["im000"], "k": 100}).json()
    found = [c["image_id"] for c in got["candidates"]]
    assert len(found) == len(set(found)) == len(keep) - 1  # every served row once, no tombstoned copy
    assert ("im059" in found) is not with_prune
    cosine = built.cosine_to("im000")
    for c in got["candidates"]:
        assert c["score"] == pytest.approx(cosine[c["image_id"]], abs=1e-5)  # im001 scored with its new vector
    assert found.index("im001") > 3  # no longer a near-duplicate
