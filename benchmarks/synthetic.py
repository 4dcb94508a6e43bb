"""Synthetic vectors shaped like CLIP embeddings of recorded drives, with a planted rare cluster.

Structure: scene prototypes (popularity Zipf-distributed) in a 64-d latent subspace of R^d;
sequences of ~100 consecutive frames drift slowly around a scene; every vector also shares a
common direction (CLIP embeddings are anisotropic) and small isotropic noise. Measured at 200k:
random pairs have cosine ~0.37, a frame's nearest neighbour ~0.96 (a nearby frame), its 100th
~0.85. A rare scene (RARE_FRACTION of the rows, spread over a few sequences) is the edge case to mine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

LATENT = 64
FRAMES_PER_SEQUENCE = 100
RARE_FRACTION = 0.0005
CHUNK = 100_000


def clip_like(n: int, d: int = 512, seed: int = 0) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Return (unit vectors [n x d], ids of the planted rare rows)."""
    out = np.empty((n, d), np.float32)
    blocks = clip_like_blocks(n, d, seed)
    rare_rows = next(blocks)[1]
    for start, block in blocks:
        out[start:start + len(block)] = block
    return out, rare_rows


def clip_like_blocks(n: int, d: int = 512, seed: int = 0,
                     block: int = CHUNK) -> Iterator[tuple[int, npt.NDArray[Any]]]:
    """Yield the rows of `clip_like(n, d, seed)` without holding them all.

    The first item is (-1, ids of the planted rare rows); then (start row, unit vectors
    [<= block x d] float32), in row order. Same vectors as clip_like for the same arguments
    (at the default block size), so 10M rows can be streamed to disk.
    """
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, LATENT)))[0].astype(np.float32)
    common = rng.standard_normal(d).astype(np.float32)
    common /= np.linalg.norm(common)
    n_scenes = max(50, min(5000, n // 500))
    scenes = rng.standard_normal((n_scenes + 1, LATENT)).astype(np.float32)
    scenes /= np.linalg.norm(scenes, axis=1, keepdims=True)
    popularity = 1.0 / np.arange(1, n_scenes + 1) ** 0.9
    n_seq = max(1, n // FRAMES_PER_SEQUENCE)
    seq_scene = rng.choice(n_scenes, n_seq, p=popularity / popularity.sum())
    n_rare_seq = max(2, round(n * RARE_FRACTION / 25))
    seq_scene[rng.choice(n_seq, n_rare_seq, replace=False)] = n_scenes  # the rare scene
    seq_centre = scenes[seq_scene] + 0.55 * rng.standard_normal((n_seq, LATENT)).astype(np.float32) / np.sqrt(LATENT)
    seq_of_row = np.minimum(np.arange(n) // FRAMES_PER_SEQUENCE, n_seq - 1)
    frame = np.arange(n) % FRAMES_PER_SEQUENCE
    # The rare scene shows in only ~25 frames of each of its sequences (a short event).
    rare_rows = np.flatnonzero((seq_scene[seq_of_row] == n_scenes) & (frame < 25))
    normal_scene_of_seq = rng.choice(n_scenes, n_seq)
    yield -1, rare_rows.astype(np.int64)
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        seq = seq_of_row[rows]
        centre = seq_centre[seq].copy()
        # frames outside the rare event of a rare sequence look like an ordinary scene
        ordinary = (seq_scene[seq] == n_scenes) & (frame[rows] >= 25)
        centre[ordinary] = scenes[normal_scene_of_seq[seq[ordinary]]]
        phase = frame[rows][:, None] / FRAMES_PER_SEQUENCE
        drift = np.sin(phase * np.pi * (1 + (seq[:, None] % 3))) * _drift_dirs(seq, rng_seed=seed)
        z = centre + 0.25 * drift + 0.12 * rng.standard_normal((len(rows), LATENT)).astype(np.float32) / np.sqrt(LATENT)
        noise = rng.standard_normal((len(rows), d)).astype(np.float32) / np.sqrt(d)
        x = (z @ basis.T) * 0.9 + 0.8 * common + 0.25 * noise
        yield start, x / np.linalg.norm(x, axis=1, keepdims=True)


def _drift_dirs(seq: npt.NDArray[np.int64], rng_seed: int) -> npt.NDArray[np.float32]:
    # One fixed random direction per sequence, derived from its number (no big table needed).
    out = np.empty((len(seq), LATENT), np.float32)
    for s in np.unique(seq):
        r = np.random.default_rng([rng_seed, int(s)]).standard_normal(LATENT).astype(np.float32)
        out[seq == s] = r / np.linalg.norm(r)
    return out
