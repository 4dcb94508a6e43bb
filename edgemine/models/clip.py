"""Load open_clip models and embed images and texts as normalized vectors."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any

import numpy as np
import torch
from PIL import Image

from edgemine.models.base import ModelUnavailable
from edgemine.models.pixels import ComposedPixelStep, Pixels, PixelStep
from edgemine.models.vectors import Vectors, l2_normalize
from edgemine.models.weights import DEFAULT_MODEL, DEFAULT_PRETRAINED, ResolvedWeights, resolve_weights

# Random weights are seeded so the indexer and the service build the *same* random model.
RANDOM_INIT_SEED = 0


def _register_bundled_configs() -> None:
    import open_clip

    configs = resources.files("edgemine.models") / "configs"
    for entry in configs.iterdir():
        if entry.name.endswith(".json"):
            with resources.as_file(entry) as path:
                open_clip.add_model_config(path)


class _OpenClipRecords(logging.Filter):
    """Drops open_clip's own records below ERROR; everything else passes."""

    def __init__(self, package_dir: str) -> None:
        super().__init__()
        self.package_dir = package_dir

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless open_clip wrote it below ERROR."""
        return record.levelno >= logging.ERROR or not record.pathname.startswith(self.package_dir)


@contextlib.contextmanager
def _quiet_open_clip(open_clip_file: str) -> Iterator[None]:
    # open_clip logs through the root logger itself (`logging.warning`), so it has no logger of its
    # own to silence; a filter on the root logger sees exactly those records (records of named
    # loggers propagate to root's handlers without passing root's filters). Our CLI says it louder.
    root = logging.getLogger()
    quiet = _OpenClipRecords(os.path.dirname(os.path.abspath(open_clip_file)) + os.sep)
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def pick_device(device: str | None) -> torch.device:
    """Return the requested torch device, or CUDA when available and none was requested."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailable("--device cuda was requested but CUDA is not available here")
    return torch.device(device)


class ClipEmbedder:
    """An open_clip model with its preprocessing; outputs L2-normalized float32 rows."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, weights: ResolvedWeights,
                 device: torch.device, batch_size: int) -> None:
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size
        self.identity = weights.identity
        self.model_name = weights.model_name
        size = getattr(model.visual, "image_size", 224)
        self.input_size = int(size if isinstance(size, int) else min(size))
        self.dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") \
            and model.text_projection is not None else self._probe_dim()

    def _probe_dim(self) -> int:
        return int(self.embed_texts(["probe"]).shape[1])

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        # fp16/bf16 autocast only on CUDA: on CPU it is slower and changes results.
        with torch.inference_mode():
            if self.device.type == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
                with torch.autocast("cuda", dtype=dtype):
                    yield
            else:
                yield

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Turn one decoded image into a model input tensor (safe to run in worker processes)."""
        return self._preprocess(image.convert("RGB"))  # type: ignore[no-any-return]

    def _split_preprocess(self) -> tuple[list[Any], list[Any]]:
        # open_clip's preprocess is a torchvision Compose: PIL steps (resize, crop, mode), then
        # ToTensor, then tensor steps (Normalize). Split at ToTensor: uint8 pixels in between.
        steps = list(self._preprocess.transforms)
        cut = next((i for i, t in enumerate(steps) if "ToTensor" in type(t).__name__), None)
        if cut is None:
            raise ModelUnavailable(f"{self.model_name}: preprocessing has no ToTensor step to split at")
        return steps[:cut], steps[cut + 1:]

    def pixel_step(self) -> PixelStep:
        """Return a picklable function: decoded image -> the model's uint8 input pixels."""
        return ComposedPixelStep(self._split_preprocess()[0])

    def to_pixels(self, image: Image.Image) -> Pixels:
        """Resize and crop one decoded image to the model's uint8 H x W x 3 input pixels."""
        return self.pixel_step()(image)

    def embed_pixels(self, pixels: Pixels) -> Vectors:
        """Embed uint8 N x H x W x 3 pixels: to float in [0, 1], the tensor steps, the model."""
        batch = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div(255.0)
        for step in self._split_preprocess()[1]:
            batch = step(batch)
        return self.embed_batch(batch.contiguous())

    def embed_batch(self, batch: torch.Tensor) -> Vectors:
        """Embed a stacked batch of preprocessed images."""
        with self._inference():
            feats = self._model.encode_image(batch.to(self.device, non_blocking=True))
        return l2_normalize(feats.float().cpu().numpy())

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        """Embed decoded images in batches of `batch_size`."""
        out = [np.empty((0, self.dim), np.float32)]
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            out.append(self.embed_batch(torch.stack([self.preprocess(im) for im in chunk])))
        return np.concatenate(out)

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        """Embed text prompts in batches of `batch_size`."""
        if not texts:
            raise ValueError("no texts to embed")
        out = []
        for start in range(0, len(texts), self.batch_size):
            with self._inference():
                tokens = self._tokenizer(list(texts[start:start + self.batch_size])).to(self.device)
                feats = self._model.encode_text(tokens)
            out.append(l2_normalize(feats.float().cpu().numpy()))
        return np.concatenate(out)


def load_clip(model_name: str = DEFAULT_MODEL, pretrained: str = DEFAULT_PRETRAINED,
              device: str | None = None, batch_size: int = 64) -> ClipEmbedder:
    """Load an open_clip model ready to embed.

    Args:
        model_name: open_clip config name ("ViT-B-32", ...) or a bundled one ("edgemine-tiny").
        pretrained: a pretrained tag, a local checkpoint path, or "none" for seeded random weights.
        device: "cpu", "cuda", "cuda:N", or None/"auto" for CUDA when available.
        batch_size: images per forward pass.
    """
    import open_clip

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    _register_bundled_configs()
    if model_name not in open_clip.list_models():
        raise ModelUnavailable(
            f"unknown model {model_name!r}; known: {', '.join(open_clip.list_models()[:12])}, ..."
        )
    weights = resolve_weights(model_name, pretrained)
    torch_device = pick_device(device)
    kwargs: dict[str, Any] = {}
    cfg = weights.tag_cfg
    for key, arg in (("mean", "image_mean"), ("std", "image_std"),
                     ("interpolation", "image_interpolation"), ("resize_mode", "image_resize_mode")):
        if key in cfg:
            kwargs[arg] = cfg[key]
    if cfg.get("quick_gelu"):
        kwargs["force_quick_gelu"] = True
    # The caller's RNG stream is theirs: random init draws from a forked, seeded CPU generator
    # (open_clip initialises on the CPU, then moves the model to the device).
    with torch.random.fork_rng(devices=[]), _quiet_open_clip(open_clip.__file__):
        if weights.checkpoint is None:
            torch.default_generator.manual_seed(RANDOM_INIT_SEED)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name,
                pretrained=str(weights.checkpoint) if weights.checkpoint else None,
                device=torch_device,
                weights_only=True,
                **kwargs,
            )
        except Exception as exc:
            raise ModelUnavailable(
                f"could not load model {model_name!r} with weights {pretrained!r}: {exc}"
            ) from exc
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    return ClipEmbedder(model, preprocess, tokenizer, weights, torch_device, batch_size)
