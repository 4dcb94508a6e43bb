"""Model identities: pretrained tags are normalized as open_clip does, and bundles compare by that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgemine.bundle import load_current
from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice, run_index, scan_directory
from edgemine.models import weights as weights_mod
from edgemine.models.weights import normalize_identity, resolve_weights, same_model
from edgemine.service.query import MineQuery
from edgemine.service.runtime import Runtime

RAW = "ViT-B-32/LAION2B-S34B-B79K"
CLEAN = "ViT-B-32/laion2b_s34b_b79k"


@pytest.mark.parametrize("tag", ["laion2b_s34b_b79k", "LAION2B-S34B-B79K", "Laion2b-S34b_b79K"])
def test_resolve_weights_records_the_tag_normalized_like_open_clip(tmp_path: Path, tag: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cached = tmp_path / "open_clip_model.safetensors"
    cached.write_bytes(b"weights")
    monkeypatch.setattr(weights_mod, "_cached_tag_file", lambda cfg: cached)  # no network, no real weights
    resolved = resolve_weights("ViT-B-32", tag)
    assert resolved.identity == CLEAN
    assert resolved.checkpoint == cached


def test_same_model_normalizes_the_tag_on_both_sides() -> None:
    assert normalize_identity(RAW) == CLEAN
    assert same_model(RAW, CLEAN) and same_model(CLEAN, RAW) and same_model(RAW, RAW)
    assert not same_model(RAW, "ViT-B-32/openai")
    assert not same_model(RAW, "ViT-B-16/laion2b_s34b_b79k")  # model names are case-sensitive in open_clip
    assert not same_model("vit-b-32/laion2b_s34b_b79k", CLEAN)
    # checkpoint digests and random weights keep their identity; BYO names compare exactly
    assert normalize_identity("edgemine-tiny/sha256:0123456789abcdef") == "edgemine-tiny/sha256:0123456789abcdef"
    assert same_model("edgemine-tiny/none-seed0", "edgemine-tiny/none-seed0")
    assert normalize_identity("byo:My-Model/V1") == "byo:My-Model/V1"
    assert not same_model("byo:My-Model", "byo:my_model")


def _choice(embedder: Any, identity: str) -> ModelChoice:
    name, pretrained = identity.split("/", 1)
    return ModelChoice(ModelInfo(identity=identity, name=name, pretrained=pretrained), lambda: embedder)


def test_index_run_accepts_a_bundle_written_with_an_unnormalized_identity(
        tmp_path: Path, image_tree: tuple[Path, list[str]], fake_embedder: Any, make_images: Any) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    first = run_index(scan_directory(root), bundle, _choice(fake_embedder, RAW), workers=0, progress=False)
    assert first.published and load_current(bundle).manifest.model.identity == RAW

    make_images(root, 3, seed=9, prefix="new")
    again = run_index(scan_directory(root), bundle, _choice(fake_embedder, CLEAN), workers=0, progress=False)
    assert again.published
    assert again.unchanged == len(ids) and again.added == 3  # the old vectors were kept, not re-embedded


def test_service_serves_and_switches_across_tag_spellings(
        tmp_path: Path, image_tree: tuple[Path, list[str]], fake_embedder: Any, make_images: Any) -> None:
    root, _ = image_tree
    bundle = tmp_path / "bundle"
    run_index(scan_directory(root), bundle, _choice(fake_embedder, RAW), workers=0, progress=False)
    fake_embedder.identity = CLEAN  # what load_clip now reports for this bundle's model
    loads: list[tuple[str, str]] = []

    def loader(name: str, pretrained: str) -> Any:
        loads.append((name, pretrained))
        return fake_embedder

    runtime = Runtime(bundle, expected_model=CLEAN, loader=loader)
    result = runtime.current().miner.mine(MineQuery(texts=["a pedestrian at night"], k=3))
    assert len(result.candidates) == 3 and loads == [("ViT-B-32", "LAION2B-S34B-B79K")]

    # a new version written with the normalized identity is switched to, not refused
    make_images(root, 2, seed=11, prefix="later")
    run_index(scan_directory(root), bundle, _choice(fake_embedder, CLEAN), workers=0, progress=False)
    assert runtime.current().snapshot.version == 2
    assert runtime.switch_error is None

