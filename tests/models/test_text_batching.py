"""The text encoder runs in batches of batch_size, like the image encoder."""

from __future__ import annotations

import numpy as np
import pytest

from edgemine.models import load_clip


def test_texts_are_embedded_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = load_clip("edgemine-tiny", "none", device="cpu", batch_size=2)
    texts = [f"prompt number {i}" for i in range(5)]
    one_by_one = np.concatenate([tiny.embed_texts([t]) for t in texts])
    sizes: list[int] = []
    encode = tiny._model.encode_text

    def counting(tokens, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(tokens))
        return encode(tokens, *args, **kwargs)

    monkeypatch.setattr(tiny._model, "encode_text", counting)
    batched = tiny.embed_texts(texts)
    assert sizes == [2, 2, 1]
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
