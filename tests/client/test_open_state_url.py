"""edgemine.open(bundle, state_url=...) shares labeling state with services through PostgreSQL."""

from __future__ import annotations

import pytest

import edgemine
from edgemine.bundle.layout import BundlePaths
from edgemine.bundle.state import open_state
from tests.support.state_backend import on_postgres

from .conftest import ApiBundle

pytestmark = pytest.mark.skipif(on_postgres(), reason="chooses its own backend")


def test_open_with_a_state_url_reads_and_writes_labels_in_postgres_not_the_bundle(
        api_bundle: ApiBundle, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    built, example = api_bundle, api_bundle.ids[1]
    for path in built.path.glob("state.sqlite*"):
        path.unlink()
    shared = open_state(BundlePaths(built.path), pg_url)
    with edgemine.open(built.path, state_url=pg_url) as client:  # fills the images table on open
        first = client.mine(positive_ids=[example], k=5).ids
        assert client.label([first[0]]) == 1
        assert first[0] not in client.mine(positive_ids=[example], k=5).ids
    assert shared.state_counts()["labeled"] == 1  # in PostgreSQL, where every service host reads it
    assert not list(built.path.glob("state.sqlite*"))  # nothing written into the bundle
    # A label set elsewhere (a service host) is respected by the next query of a notebook.
    shared.set_state([first[1]], "labeled")
    monkeypatch.setenv("EDGEMINE_STATE_URL", pg_url)
    with edgemine.open(built.path) as client:
        assert not {first[0], first[1]} & set(client.mine(positive_ids=[example], k=5).ids)
