"""The Ray Data engine: decode in CPU tasks, embed in an actor pool, stage results, commit on the driver.

    pending items (driver) -> from_arrow blocks -> decode_batch (CPU tasks, uint8 pixels, error)
        -> EmbedActor pool (model loaded once per actor, GPU when asked) -> driver: staged shard,
        journal (on_batch), failures (on_failures)

Only the driver touches the bundle: workers need the images and the installed package. Ray is
imported only when this engine runs (`pip install 'edgemine[ray]'`).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from edgemine.bundle.errors import BundleError
from edgemine.bundle.layout import BundlePaths
from edgemine.bundle.objects import store_environment
from edgemine.indexer import ray_staging
from edgemine.indexer.engine import EmbedJob, OnBatch, OnFailures
from edgemine.indexer.pipeline import EmbedStats
from edgemine.indexer.ray_ivf import RAY_IVF_MIN_ROWS, RayIvfBuilder
from edgemine.indexer.ray_tasks import EmbedActor, decode_batch
from edgemine.indexer.sources import SourceItem
from edgemine.models.pixels import PixelEmbedder
from edgemine.search.maintain import IndexBuilder

# Attempts per decode task and per actor task: Ray retries a worker that died mid-batch; a file
# that fails every attempt is isolated (its block re-run one file per block) and reported.
RAY_TRIES = 3
LOST_REASON = (f"lost by the Ray job: its worker failed on every try ({RAY_TRIES} attempts, one file "
               "per block); see the Ray worker logs")


class RayUnavailable(BundleError):
    """`--engine ray` without Ray installed, or a cluster that cannot be reached."""


def import_ray() -> Any:
    """Import ray, or explain how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayUnavailable("--engine ray needs Ray: pip install 'edgemine[ray]'") from exc
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Join the Ray already initialised in this process, or connect/start one and shut it down after."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        kwargs["include_dashboard"] = False  # only when starting a local instance
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot connect to Ray at {address or 'a new local instance'}: {exc}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def _store_env() -> dict[str, Any]:
    # Decode tasks may run on other nodes, which do not see this driver's environment: they read
    # s3:// / gs:// objects with the driver's endpoint, region and credentials.
    env = store_environment()
    return {"runtime_env": {"env_vars": env}} if env else {}


def _chunks(items: Sequence[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


@contextlib.contextmanager
def _data_context(ray: Any, progress: bool) -> Iterator[None]:
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.max_errored_blocks, ctx.enable_progress_bars)
    # Blocks that fail every try are dropped, not fatal: their files are found missing from the
    # output and isolated by `_embed_pass`'s caller, so one poison file cannot fail the run.
    ctx.max_errored_blocks = -1
    ctx.enable_progress_bars = progress
    try:
        yield
    finally:
        ctx.max_errored_blocks, ctx.enable_progress_bars = saved


@dataclass
class RayEngine:
    """Embeds on a Ray cluster (`address`: None starts a local Ray; "auto", "HOST:PORT", "ray://...")."""

    address: str | None = None
    actors: int = 1
    gpus_per_actor: float = 0.0
    ivf_min_rows: int = RAY_IVF_MIN_ROWS  # smaller IVF indexes are filled in this process
    name: str = "ray"
    stats_text: str = ""  # Ray Data's `Dataset.stats()` of the last pass: operators, times, rows

    def embed(self, job: EmbedJob, on_batch: OnBatch, on_failures: OnFailures) -> EmbedStats:
        """Embed `job.items` on Ray; staged results of an interrupted run are reused, not re-embedded."""
        stats = EmbedStats()
        started = time.perf_counter()
        if not job.items:
            return stats
        embedder = job.embedder
        if not isinstance(embedder, PixelEmbedder):
            raise BundleError(f"--engine ray: the model {job.model_identity} has no uint8 pixel step "
                              "(to_pixels/embed_pixels); use --engine local")
        folder = ray_staging.staging_dir(job.paths, job.model_identity)
        staged = ray_staging.read_staged(folder, embedder.dim)
        hits = [i for i in job.items if i.image_id in staged and staged[i.image_id][0] == i.fingerprint]
        for chunk in _chunks(hits, job.batch_size):
            on_batch(chunk, np.stack([staged[i.image_id][1] for i in chunk]))
        stats.resumed = len(hits)
        hit_ids = {i.image_id for i in hits}
        pending = [i for i in job.items if i.image_id not in hit_ids]
        if pending:
            with ray_session(self.address) as ray, _data_context(ray, job.progress):
                done = self._embed_pass(ray, pending, job, embedder, folder, job.batch_size,
                                        on_batch, on_failures, stats)
                lost = [i for i in pending if i.image_id not in done]
                if lost:  # isolate the file(s) that failed every try: one per block
                    done |= self._embed_pass(ray, lost, job, embedder, folder, 1, on_batch,
                                             on_failures, stats)
            lost = [i for i in pending if i.image_id not in done]
            if lost:
                on_failures([(i, LOST_REASON) for i in lost])
                stats.failed += len(lost)
        stats.seconds = time.perf_counter() - started
        return stats

    def discard_staged(self, paths: BundlePaths) -> None:
        """Delete the staged shards: their vectors are in the published version."""
        ray_staging.discard(paths)

    def index_builder(self) -> IndexBuilder | None:
        """Fill large IVF indexes in parallel Ray tasks (`ray_ivf`); others build in this process."""
        return RayIvfBuilder(self.address, ivf_min_rows=self.ivf_min_rows)

    def _embed_pass(self, ray: Any, items: list[SourceItem], job: EmbedJob, embedder: PixelEmbedder,
                    folder: Path, block_rows: int, on_batch: OnBatch, on_failures: OnFailures,
                    stats: EmbedStats) -> set[str]:
        """Run the pipeline over `items` in blocks (and model batches) of at most `block_rows`.

        Returns the ids it accounted for (embedded or failed with a reason); the rest were in
        blocks that failed every try.
        """
        pixel_step = embedder.pixel_step()
        # The pixel step's output shape is fixed by the model (resize + crop): probe it once.
        shape = tuple(int(s) for s in pixel_step(Image.new("RGB", (97, 131))).shape)
        blocks = [pa.table({"id": [i.image_id for i in chunk], "path": [i.path for i in chunk],
                            "fingerprint": [i.fingerprint for i in chunk]})
                  for chunk in _chunks(items, block_rows)]
        ds = ray.data.from_arrow(blocks)
        gpus = {"num_gpus": self.gpus_per_actor} if self.gpus_per_actor > 0 else {}
        with warnings.catch_warnings():
            # Ray 2.60 has no named parameter for retry limits yet (`ray_remote_args` is deprecated
            # for 2.64, hence the extra's pin); without them a file that kills its worker would be
            # retried forever (Ray's default for system failures).
            warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
            ds = ds.map_batches(decode_batch, batch_size=block_rows, batch_format="numpy", num_cpus=1,
                                fn_kwargs={"pixel_step": pixel_step,
                                           "min_side": getattr(embedder, "input_size", None),
                                           "shape": shape},
                                max_retries=RAY_TRIES - 1, **_store_env())
            # Different remote args (actor restarts, GPUs) also keep Ray from fusing decode into
            # the actor, which would serialise decoding with the model (checked in the tests).
            ds = ds.map_batches(EmbedActor, fn_constructor_kwargs={"load": job.load},
                                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, self.actors)),
                                batch_size=min(job.batch_size, block_rows), batch_format="numpy", num_cpus=1,
                                max_restarts=RAY_TRIES - 1, max_task_retries=RAY_TRIES - 1, **gpus)
        by_id = {i.image_id: i for i in items}
        done: set[str] = set()
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            ids = [str(x) for x in batch["id"]]
            errors = [str(e) for e in batch["error"]]
            embeddings = np.asarray(batch["embedding"], np.float32).reshape(len(ids), embedder.dim)
            fresh = [r for r, image_id in enumerate(ids) if image_id in by_id and image_id not in done]
            if not fresh:
                continue  # a retried block's rows already committed: dedupe by id
            ray_staging.write_shard(folder, [ids[r] for r in fresh],
                                    [str(batch["fingerprint"][r]) for r in fresh],
                                    embeddings[fresh], [errors[r] for r in fresh])
            good = [r for r in fresh if not errors[r]]
            bad = [r for r in fresh if errors[r]]
            if good:
                on_batch([by_id[ids[r]] for r in good], embeddings[good])
                stats.embedded += len(good)
            if bad:
                on_failures([(by_id[ids[r]], errors[r]) for r in bad])
                stats.failed += len(bad)
            done.update(ids[r] for r in fresh)
        self.stats_text = ds.stats()
        return done
