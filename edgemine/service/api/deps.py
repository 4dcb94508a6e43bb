"""FastAPI dependencies: the runtime, the current bundle version and the state database.

They are `async def`: FastAPI runs a plain `def` dependency in the threadpool, one hop per
dependency per request, which costs more than these lookups do.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from edgemine.bundle.state import StateDB
from edgemine.service.config import Settings
from edgemine.service.runtime import Loaded, Runtime


async def get_runtime(request: Request) -> Runtime:
    """Return the runtime created in the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_settings(request: Request) -> Settings:
    """Return the app's settings."""
    settings: Settings = request.app.state.settings
    return settings


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_loaded(runtime: RuntimeDep) -> Loaded:
    """Return the newest published bundle version (hot-swapped when the indexer publishes)."""
    loaded = runtime.unchanged()
    # Switching to a new version loads its index: in a worker thread, not on the event loop.
    return loaded if loaded is not None else await run_in_threadpool(runtime.current)


async def get_state(runtime: RuntimeDep) -> StateDB:
    """Return the bundle's state database."""
    assert runtime.state is not None
    return runtime.state


LoadedDep = Annotated[Loaded, Depends(get_loaded)]
StateDep = Annotated[StateDB, Depends(get_state)]
