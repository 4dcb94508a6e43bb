"""The service's live state: the current bundle version (hot-swapped) and the lazy model."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgemine.bundle import images_sync
from edgemine.bundle.errors import BundleError, ModelMismatch, StateBusy, StateUnavailable
from edgemine.bundle.layout import BundlePaths
from edgemine.bundle.snapshot import Snapshot, load_current
from edgemine.bundle.state import StateDB, open_state
from edgemine.models.base import Embedder
from edgemine.models.weights import same_model
from edgemine.search.searcher import Searcher
from edgemine.service.miner import Miner
from edgemine.service.row_states import RowStates

log = logging.getLogger("edgemine.service")
# After a version switch failed on a database error (locked, I/O), retry it this much later.
SWITCH_RETRY_SECONDS = 10.0
EmbedderLoader = Callable[[str, str], Embedder]


def _default_loader(name: str, pretrained: str) -> Embedder:
    from edgemine.models import load_clip

    return load_clip(name, pretrained)


@dataclass
class Loaded:
    """One bundle version ready to mine."""

    snapshot: Snapshot
    miner: Miner
    stamp: tuple[int, int]


class Runtime:
    """Holds the current bundle version and switches to a newly published one without a restart.

    In-flight requests keep the `Miner` they started with; a new version is picked up by the
    next request after CURRENT changes (checked with one stat per request).
    """

    def __init__(self, bundle: Path, *, expected_model: str | None = None,
                 loader: EmbedderLoader = _default_loader, public_url: str = "",
                 state_url: str | None = None) -> None:
        self.paths = BundlePaths(bundle)
        # With a state URL the bundle is only read: its directory may be mounted read-only.
        self.state: StateDB | None = open_state(self.paths, state_url) if state_url else (
            None if not self.paths.state_db.is_file() else StateDB(self.paths.state_db))
        self.expected_model = expected_model
        self._loader = loader
        self.public_url = public_url
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._embedder: Embedder | None = None
        self._embedder_key: tuple[str, str] | None = None
        self.switch_error: str | None = None
        self._retry_at: float | None = None  # when to retry a switch that met a database error
        try:
            self._loaded = self._load()
        except sqlite3.Error as exc:
            raise BundleError(f"cannot read the state database {self.paths.state_db}: {exc}") from exc

    def _stamp(self) -> tuple[int, int]:
        st = os.stat(self.paths.current)
        return st.st_mtime_ns, st.st_ino

    def _load(self) -> Loaded:
        stamp = self._stamp() if self.paths.current.exists() else (0, 0)
        snapshot = load_current(self.paths.root)
        identity = snapshot.manifest.model.identity
        if self.expected_model and not same_model(identity, self.expected_model):
            raise ModelMismatch(f"bundle {self.paths.root} was built with model {identity!r}, "
                                f"the service is configured for {self.expected_model!r}")
        served = getattr(self, "_loaded", None)
        if served is not None and not same_model(identity, served.snapshot.manifest.model.identity):
            # Scores, queued batches and loaded weights all belong to the served model.
            raise ModelMismatch(f"bundle {self.paths.root} version {snapshot.version} was built with "
                                f"model {identity!r}, the service is serving "
                                f"{served.snapshot.manifest.model.identity!r}: restart it to switch")
        if self.state is None:
            raise BundleError(f"bundle {self.paths.root} has no state.sqlite")
        if self.state.shared:
            # Several hosts share the state: the first to serve a version fills its images.
            images_sync.bring_in_step(self.state, snapshot.version, snapshot.catalog)
        states = RowStates(snapshot.row_by_id, self.state)
        embedder = None if identity.startswith("byo:") else self.embedder_for(snapshot)
        info = snapshot.manifest.index
        searcher = None
        if info.type in ("ivf", "hnsw"):
            # Memory-mapped where FAISS allows it: fast start, pages shared between workers.
            searcher = Searcher(snapshot.load_index(), info.type, dict(info.search_params),
                                snapshot.catalog.column("vec_id").to_numpy(),
                                [(1.0 - f.excluded, dict(f.params), {int(m): dict(p) for m, p in f.by_examples.items()})
                                 for f in info.filtered])
        miner = Miner(snapshot, states, embedder, self.public_url, searcher)
        return Loaded(snapshot, miner, stamp)

    def embedder_for(self, snapshot: Snapshot) -> Callable[[], Embedder]:
        """Return a loader of the bundle's model, loaded once on first use."""
        model = snapshot.manifest.model

        def get() -> Embedder:
            key = (model.name, model.pretrained)
            with self._model_lock:
                if self._embedder is None or self._embedder_key != key:
                    embedder = self._loader(model.name, model.pretrained)
                    if not same_model(embedder.identity, model.identity):
                        raise ModelMismatch(f"model {embedder.identity!r} does not match the "
                                            f"bundle's {model.identity!r}")
                    self._embedder, self._embedder_key = embedder, key
                return self._embedder

        return get

    def _due(self) -> tuple[Loaded, tuple[int, int] | None]:
        """Return the served version and, when a switch is due, CURRENT's new stamp (else None)."""
        loaded = self._loaded
        try:
            stamp = self._stamp()
        except FileNotFoundError:
            return loaded, None
        retry = self._retry_at is not None and time.monotonic() >= self._retry_at
        return loaded, (None if stamp == loaded.stamp and not retry else stamp)

    def unchanged(self) -> Loaded | None:
        """Return the served version if no switch is due (one stat, never loads); else None."""
        loaded, stamp = self._due()
        return loaded if stamp is None else None

    def current(self) -> Loaded:
        """Return the newest published version, switching to it if CURRENT changed."""
        loaded, stamp = self._due()
        if stamp is None:
            return loaded
        with self._lock:
            if self._loaded is not loaded:
                return self._loaded
            try:
                fresh = self._load()
            except (BundleError, OSError, sqlite3.Error) as exc:
                # Keep serving the version we have; health reports why we did not switch. A
                # database error may clear (a lock, a full disk): retry later; a bad version
                # is not retried until CURRENT changes again.
                transient = isinstance(exc, sqlite3.Error | StateBusy | StateUnavailable)
                self.switch_error = f"state database error: {exc}" if transient else str(exc)
                self._retry_at = time.monotonic() + SWITCH_RETRY_SECONDS if transient else None
                log.error("not switching bundle version: %s", exc)
                self._loaded = Loaded(loaded.snapshot, loaded.miner, stamp)
                return self._loaded
            self.switch_error = None
            self._retry_at = None
            log.info("switched to bundle version %d", fresh.snapshot.version)
            self._loaded = fresh
            return fresh

    @property
    def model_loaded(self) -> bool:
        """Return whether the CLIP model has been loaded yet."""
        return self._embedder is not None
