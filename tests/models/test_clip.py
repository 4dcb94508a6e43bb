"""load_clip / resolve_weights with the bundled tiny config (random or checkpointed weights)."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from edgemine.models import ClipEmbedder, ModelUnavailable, load_clip, resolve_weights
from edgemine.models import weights as weights_mod

TINY = "edgemine-tiny"


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def tiny() -> ClipEmbedder:
    return load_clip(TINY, "none", device="cpu", batch_size=2)


def _assert_unit_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_tiny_model_embeds_images_and_texts_as_unit_rows(tiny: ClipEmbedder) -> None:
    assert tiny.dim == 64
    assert tiny.identity == f"{TINY}/none-seed0"
    images = tiny.embed_images(_images(5))  # batch_size=2: three forward passes
    _assert_unit_rows(images, 5, 64)
    assert not np.allclose(images[0], images[1])  # different images, different vectors
    texts = tiny.embed_texts(["a pedestrian at night", "an empty road"])
    _assert_unit_rows(texts, 2, 64)
    assert not np.allclose(texts[0], texts[1])
    # batching does not change results
    one_by_one = np.concatenate([tiny.embed_images([im]) for im in _images(5)])
    np.testing.assert_allclose(images, one_by_one, atol=1e-5)


def test_embed_batch_matches_embed_images(tiny: ClipEmbedder) -> None:
    ims = _images(3, seed=4)
    batch = torch.stack([tiny.preprocess(im) for im in ims])
    np.testing.assert_allclose(tiny.embed_batch(batch), tiny.embed_images(ims), atol=1e-6)


def test_empty_text_list_is_rejected(tiny: ClipEmbedder) -> None:
    with pytest.raises(ValueError, match="no texts"):
        tiny.embed_texts([])


def test_random_init_is_deterministic_across_loads(tiny: ClipEmbedder) -> None:
    torch.manual_seed(12345)  # the global seed must not matter
    again = load_clip(TINY, "none", device="cpu")
    ims = _images(3, seed=1)
    np.testing.assert_allclose(again.embed_images(ims), tiny.embed_images(ims), atol=1e-6)
    np.testing.assert_allclose(again.embed_texts(["a cyclist"]), tiny.embed_texts(["a cyclist"]), atol=1e-6)


def test_unknown_model_and_bad_batch_size() -> None:
    with pytest.raises(ModelUnavailable, match="unknown model 'no-such-model'"):
        load_clip("no-such-model", "none")
    with pytest.raises(ValueError, match="batch_size"):
        load_clip(TINY, "none", batch_size=0)


def test_unknown_tag_lists_known_tags() -> None:
    with pytest.raises(ModelUnavailable) as info:
        resolve_weights("ViT-B-32", "no_such_tag_xyz")
    msg = str(info.value)
    assert "'no_such_tag_xyz'" in msg and "'ViT-B-32'" in msg
    for tag in ("laion2b_s34b_b79k", "openai"):
        assert tag in msg
    assert "checkpoint" in msg


@pytest.mark.parametrize("name", ["missing.pt", "missing.safetensors", "sub/dir/weights"])
def test_missing_checkpoint_path_is_unavailable(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(ModelUnavailable, match="checkpoint file not found"):
        resolve_weights(TINY, str(path))
    with pytest.raises(ModelUnavailable, match="checkpoint file not found"):
        load_clip(TINY, str(path))


def test_checkpoint_file_identity_and_same_vectors(tmp_path: Path, tiny: ClipEmbedder) -> None:
    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny._model.state_dict(), ckpt)
    resolved = resolve_weights(TINY, str(ckpt))
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert resolved.identity == f"{TINY}/sha256:{digest[:16]}"
    assert re.fullmatch(rf"{TINY}/sha256:[0-9a-f]{{16}}", resolved.identity)
    assert resolved.checkpoint == ckpt

    loaded = load_clip(TINY, str(ckpt), device="cpu")
    assert loaded.identity == resolved.identity
    ims = _images(4, seed=2)
    np.testing.assert_allclose(loaded.embed_images(ims), tiny.embed_images(ims), atol=1e-6)
    np.testing.assert_allclose(loaded.embed_texts(["x"]), tiny.embed_texts(["x"]), atol=1e-6)


def test_corrupt_checkpoint_file_is_unavailable(tmp_path: Path) -> None:
    ckpt = tmp_path / "broken.pt"
    ckpt.write_bytes(b"not a torch checkpoint")
    with pytest.raises(ModelUnavailable, match=TINY):
        load_clip(TINY, str(ckpt))


def test_uncached_tag_offline_fails_fast_with_guidance(monkeypatch: pytest.MonkeyPatch) -> None:
    tag = "laion2b_s34b_b79k"
    assert tag in open_clip.list_pretrained_tags_by_model("ViT-B-32")
    if weights_mod._cached_tag_file(open_clip.get_pretrained_cfg("ViT-B-32", tag)) is not None:
        pytest.skip("these weights are cached on this machine")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as info:
        resolve_weights("ViT-B-32", tag)
    with pytest.raises(ModelUnavailable):
        load_clip("ViT-B-32", tag, device="cpu")
    assert time.monotonic() - started < 10
    msg = str(info.value)
    assert "'ViT-B-32'" in msg and repr(tag) in msg
    assert "offline" in msg
    assert "--pretrained /path/to/" in msg


def test_load_clip_leaves_the_global_torch_rng_untouched() -> None:
    torch.manual_seed(2024)
    expected = torch.rand(4)  # what the caller's next draw is without a model load in between
    torch.manual_seed(2024)
    load_clip(TINY, "none", device="cpu")
    np.testing.assert_array_equal(torch.rand(4).numpy(), expected.numpy())


def test_load_clip_keeps_the_root_logger_and_other_loggers(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.INFO)
    seen: dict[str, Any] = {}
    create = open_clip.create_model_and_transforms

    def spying_create(*args: Any, **kwargs: Any) -> Any:
        # Another part of the program logs while the model loads: it must still be heard.
        seen["root_level"] = root.level
        logging.getLogger("edgemine.elsewhere").warning("unrelated warning during the load")
        logging.warning("unrelated root warning during the load")
        return create(*args, **kwargs)  # open_clip itself warns "No pretrained weights loaded"

    monkeypatch.setattr(open_clip, "create_model_and_transforms", spying_create)
    with caplog.at_level(logging.INFO):
        load_clip(TINY, "none", device="cpu")
    assert seen["root_level"] == logging.INFO
    assert root.level == logging.INFO and not root.filters
    messages = [r.getMessage() for r in caplog.records]
    assert "unrelated warning during the load" in messages
    assert "unrelated root warning during the load" in messages
    assert not [m for m in messages if "No pretrained weights loaded" in m]  # open_clip's own noise is muted
