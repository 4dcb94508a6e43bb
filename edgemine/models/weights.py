"""Resolve a pretrained tag or checkpoint file to a local file, failing fast when offline."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemine.models.base import ModelUnavailable

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
NO_WEIGHTS = "none"
BYO_PREFIX = "byo:"  # precomputed embeddings: the name is the user's, compared exactly
# Where open_clip fetches weights from; probed once so offline runs fail in seconds, not ~30 s.
_HUB_HOST = ("huggingface.co", 443)
_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a model's weights come from and the identity string recorded in bundles."""

    model_name: str
    checkpoint: Path | None  # None means random initialisation (pretrained="none")
    identity: str
    tag_cfg: dict[str, Any]  # open_clip's pretrained config for a tag (mean/std, quick_gelu)


def clean_tag(tag: str) -> str:
    """Normalize a pretrained tag as open_clip does (`_clean_tag`: lower case, '-' -> '_')."""
    return tag.lower().replace("-", "_")


def normalize_identity(identity: str) -> str:
    """Return a model identity with its pretrained tag normalized; BYO identities stay as they are.

    Bundles written before tags were normalized hold the tag as typed: comparisons normalize
    both sides, so `ViT-B-32/LAION2B-S34B-B79K` and `ViT-B-32/laion2b_s34b_b79k` are one model.
    """
    if identity.startswith(BYO_PREFIX) or "/" not in identity:
        return identity
    model_name, tag = identity.split("/", 1)  # open_clip model names hold no '/'
    return f"{model_name}/{clean_tag(tag)}"


def same_model(a: str, b: str) -> bool:
    """Tell whether two model identities name the same weights."""
    return normalize_identity(a) == normalize_identity(b)


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection(_HUB_HOST, timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _cached_tag_file(cfg: dict[str, Any]) -> Path | None:
    """Return the locally cached checkpoint for a tag's config, without touching the network."""
    if "file" in cfg:
        return Path(cfg["file"])
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import hf_hub_download

        repo_id, filename = os.path.split(hub)
        names = [filename or "open_clip_pytorch_model.bin"]
        if names[0].endswith((".bin", ".pth")):
            names.insert(0, names[0][:-4] + ".safetensors")
        if names[-1] == "open_clip_pytorch_model.bin":
            names.insert(0, "open_clip_model.safetensors")
        for name in names:
            try:
                cached: str = hf_hub_download(repo_id, name, local_files_only=True)
                return Path(cached)
            except Exception:
                continue
    url = str(cfg.get("url", ""))
    if url:
        candidate = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if candidate.is_file():
            return candidate
    return None


def resolve_weights(model_name: str, pretrained: str) -> ResolvedWeights:
    """Resolve `pretrained` (a tag, a checkpoint path, or "none") for an open_clip model.

    Args:
        model_name: an open_clip model config name, e.g. "ViT-B-32" or "edgemine-tiny".
        pretrained: an open_clip pretrained tag (e.g. "laion2b_s34b_b79k"), a path to a local
            checkpoint file, or "none" for random weights (tests, offline smoke runs).
    """
    import open_clip

    if pretrained.lower() == NO_WEIGHTS:
        return ResolvedWeights(model_name, None, f"{model_name}/none-seed0", {})
    path = Path(pretrained).expanduser()
    if path.is_file():
        digest = file_sha256(path)
        return ResolvedWeights(model_name, path, f"{model_name}/sha256:{digest[:16]}", {})
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        if os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
            raise ModelUnavailable(f"checkpoint file not found: {pretrained}")
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ModelUnavailable(
            f"unknown pretrained tag {pretrained!r} for model {model_name!r}; "
            f"known tags: {', '.join(tags) or '(none)'}; or pass a checkpoint file path, or 'none'"
        )
    identity = f"{model_name}/{clean_tag(pretrained)}"  # one identity however the tag is spelled
    cached = _cached_tag_file(cfg)
    if cached is not None:
        return ResolvedWeights(model_name, cached, identity, cfg)
    if not _hub_reachable():
        raise ModelUnavailable(
            f"weights for model {model_name!r} with tag {pretrained!r} are not cached and the "
            "model hub cannot be reached (offline). Download the checkpoint on a connected "
            "machine (open_clip caches it under ~/.cache/huggingface) and copy the cache here, "
            f"or pass a local checkpoint file: --pretrained /path/to/{model_name}.bin "
            "(or --pretrained none for random weights, which give meaningless rankings)"
        )
    try:
        downloaded = open_clip.download_pretrained(cfg)
    except Exception as exc:
        raise ModelUnavailable(
            f"downloading weights for {model_name!r} tag {pretrained!r} failed: {exc}; "
            "pass a local checkpoint file with --pretrained PATH instead"
        ) from exc
    return ResolvedWeights(model_name, Path(downloaded), identity, cfg)
