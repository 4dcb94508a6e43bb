"""Where the CPU of one `POST /v1/mine` goes outside `Miner.mine`: the ASGI app, in process.

The service app (`create_app`) is called directly as an ASGI app, on the same drive-like bundle
as bench_service.py, with its threadpool hops run inline so that the whole request runs on this
thread and `time.thread_time` measures it. Every layer is timed inclusive (middlewares, routing,
the route handler, the Unicode guard, dependencies and body validation, the miner, the JSON
encoding); a layer's own cost is its time minus that of what it calls. No profiler runs during
the timed pass (cProfile multiplies Python-heavy layers several times). The hop to a worker
thread and back is measured apart (CPU of the whole process per no-op hop), as are uvicorn's
parser and the socket (not part of the app: see bench_service.py for the end-to-end figures;
`--server` also runs a real `edgemine serve` and reports its CPU per request by thread).

    python benchmarks/profile_http.py --n 200k --ks 10,100 --requests 200 --out benchmarks/results/DATE

Writes <out>/<name>.json and .md and prints the Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from bench_search import parse_size  # noqa: E402
from bench_service import bundle_for, queries  # noqa: E402

Clock = dict[str, float]


class Timed:
    """Inclusive CPU seconds per label, summed over requests."""

    def __init__(self) -> None:
        self.total: Clock = {}

    def add(self, label: str, seconds: float) -> None:
        """Add one measurement."""
        self.total[label] = self.total.get(label, 0.0) + seconds

    def wrap_asgi(self, label: str, app: Any) -> Any:
        """Return an ASGI app that times `app` (inclusive) under `label`."""

        async def timed(scope: Any, receive: Any, send: Any) -> None:
            t0 = time.thread_time()
            try:
                await app(scope, receive, send)
            finally:
                self.add(label, time.thread_time() - t0)

        return timed

    def wrap_async(self, label: str, func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """Return a coroutine function that times `func` (inclusive) under `label`."""

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return await func(*args, **kwargs)
            finally:
                self.add(label, time.thread_time() - t0)

        return timed

    def wrap_sync(self, label: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """Return a function that times `func` (inclusive) under `label`."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                self.add(label, time.thread_time() - t0)

        return timed


def instrument(app: Any, timed: Timed) -> list[str]:
    """Wrap every middleware layer of the built app and the mining route's parts; return the layer labels
    outermost first (each layer's own cost is its time minus the next one's)."""
    import fastapi.routing

    from edgemine.service import miner as miner_module
    from edgemine.service.api import guard, routes_mine
    layers: list[str] = []
    parent: Any = app
    attr = "middleware_stack"
    app.middleware_stack = app.build_middleware_stack()
    while True:
        layer = getattr(parent, attr)
        label = f"middleware {type(layer).__name__}" if type(layer).__name__ != "APIRouter" else "router"
        layers.append(label)
        setattr(parent, attr, timed.wrap_asgi(label, layer))
        if not hasattr(layer, "app") or type(layer).__name__ == "APIRouter":
            break
        parent, attr = layer, "app"
    # The matched route's ASGI app (request_response: Request object, exception wrapper, exit stacks).
    handle = guard.GuardedRoute.handle

    async def timed_handle(self: Any, scope: Any, receive: Any, send: Any) -> None:
        t0 = time.thread_time()
        try:
            await handle(self, scope, receive, send)
        finally:
            timed.add("route app", time.thread_time() - t0)

    guard.GuardedRoute.handle = timed_handle  # type: ignore[method-assign]
    guard.check_request = timed.wrap_async("guard check_request", guard.check_request)
    fastapi.routing.solve_dependencies = timed.wrap_async("dependencies + body validation",
                                                          fastapi.routing.solve_dependencies)
    original_mine = miner_module.Miner.mine
    miner_module.Miner.mine = timed.wrap_sync("Miner.mine", original_mine)  # type: ignore[method-assign]
    # The route's "mine and encode" function (named `_mine_json` before 2026-12-02).
    name = "mine_json" if hasattr(routes_mine, "mine_json") else "_mine_json"
    setattr(routes_mine, name, timed.wrap_sync("Miner.mine + JSON encoding", getattr(routes_mine, name)))
    if hasattr(routes_mine, "observe_mine"):
        routes_mine.observe_mine = timed.wrap_sync("metrics histogram", routes_mine.observe_mine)
    else:  # before 2026-12-02: MINE_SECONDS.labels(...).observe(...) in the route
        from edgemine.service.api.metrics import MINE_SECONDS

        MINE_SECONDS.labels = timed.wrap_sync("metrics histogram", MINE_SECONDS.labels)  # type: ignore[method-assign]
    return layers


def scope_for(body: bytes) -> dict[str, Any]:
    """Return the ASGI scope of `POST /v1/mine` with a JSON body, as uvicorn builds it."""
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/mine", "raw_path": b"/v1/mine", "query_string": b"",
            "root_path": "", "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"Python-urllib/3.11"),
                                         (b"content-type", b"application/json"),
                                         (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}


async def call(app: Any, body: bytes) -> bytes:
    """Send one request through the ASGI app; return the response body (status 200 checked)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope_for(body), receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"HTTP {sent[0]['status']}: {sent[1:]!r}")
    return b"".join(m.get("body", b"") for m in sent[1:])


async def hop_cost(count: int) -> float:
    """Return the process CPU seconds of one real threadpool hop with nothing to do."""
    from starlette.concurrency import run_in_threadpool

    for _ in range(20):
        await run_in_threadpool(lambda: None)
    t0 = time.process_time()
    for _ in range(count):
        await run_in_threadpool(lambda: None)
    return (time.process_time() - t0) / count


def breakdown(timed: Timed, layers: list[str], requests: int) -> dict[str, float]:
    """Return each component's own CPU microseconds per request."""
    tot = {k: v * 1e6 / requests for k, v in timed.total.items()}
    out: dict[str, float] = {}
    chain = [*layers, "route app"]
    for outer, inner in itertools.pairwise(chain):
        out[outer] = tot[outer] - tot[inner]
    encode = tot["Miner.mine + JSON encoding"] - tot["Miner.mine"]
    out["JSON encoding (model_dump_json)"] = encode
    out["guard check_request"] = tot["guard check_request"]
    out["dependencies + body validation"] = tot["dependencies + body validation"]
    out["metrics histogram"] = tot["metrics histogram"]
    out["route app (request parsing, FastAPI handler, response)"] = (
        tot["route app"] - tot["guard check_request"] - tot["dependencies + body validation"]
        - tot["Miner.mine + JSON encoding"] - tot["metrics histogram"])
    out["all outside Miner.mine"] = tot[layers[0]] - tot["Miner.mine"]
    out["Miner.mine"] = tot["Miner.mine"]
    return {k: round(v, 1) for k, v in out.items()}


async def profile(bundle: Path, ks: list[int], requests: int, repeats: int) -> dict[str, Any]:
    """Time the mining route per component at each k (best of `repeats` passes, by total outside the miner)."""
    import anyio.to_thread

    from edgemine.bundle.snapshot import load_current
    from edgemine.service.app import create_app
    from edgemine.service.config import Settings

    ids = load_current(bundle).image_ids
    app = create_app(Settings(bundle=bundle))
    timed = Timed()
    real_run_sync = anyio.to_thread.run_sync

    async def inline(func: Callable[..., Any], *args: Any, **_: Any) -> Any:
        return func(*args)

    out: dict[str, Any] = {"runs": {}}
    async with app.router.lifespan_context(app):
        layers = instrument(app, timed)
        out["hop_us"] = round(await hop_cost(requests) * 1e6, 1)
        anyio.to_thread.run_sync = inline  # type: ignore[assignment]
        try:
            for k in ks:
                bodies = queries(ids, requests, k, seed=k)
                for body in bodies[:10]:
                    await call(app, body)
                best: dict[str, float] | None = None
                for _ in range(repeats):
                    timed.total.clear()
                    gc.collect()
                    for body in bodies:
                        await call(app, body)
                    row = breakdown(timed, layers, len(bodies))
                    if best is None or row["all outside Miner.mine"] < best["all outside Miner.mine"]:
                        best = row
                out["runs"][str(k)] = best
                sizes = [len(await call(app, b)) for b in bodies[:20]]
                out.setdefault("response_bytes", {})[str(k)] = int(np.median(sizes))
        finally:
            anyio.to_thread.run_sync = real_run_sync  # type: ignore[assignment]
    return out


def thread_cpu(pid: int) -> dict[str, tuple[float, float]]:
    """Return (user, system) CPU seconds so far of each thread of process `pid`, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        out[task.name] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def server_threads(bundle: Path, ks: list[int], requests: int, tmp: Path) -> list[dict[str, Any]]:
    """Serve the bundle (`edgemine serve`, 1 worker) and return, per k and client kind, the CPU ms
    per request of the event-loop thread and of the other threads (user, system), from /proc."""
    import subprocess

    from bench_service import Client, serve

    from edgemine.bundle.snapshot import load_current

    ids = load_current(bundle).image_ids
    log_dir = tmp / "service-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with serve(bundle, 1, log_dir, [], name="profile") as base:
        port = base.rsplit(":", 1)[1]
        pid = int(subprocess.check_output(["pgrep", "-f", f"serve --port {port} "]).split()[0])
        for k in ks:
            bodies = queries(ids, requests, k, seed=k)
            for keep_alive in (False, True):
                client = Client(base, keep_alive)
                for body in bodies[:5]:
                    client.mine(body)
                before = thread_cpu(pid)
                client_ms, server_ms = [], []
                for body in bodies:
                    took, total = client.mine(body)
                    client_ms.append(took)
                    server_ms.append(total)
                after = thread_cpu(pid)
                per = {t: [(after[t][i] - before.get(t, (0.0, 0.0))[i]) * 1e3 / len(bodies) for i in (0, 1)]
                       for t in after}
                loop = per.pop(str(pid))  # uvicorn's event loop runs on the process's main thread
                busy = {t: v for t, v in per.items() if sum(v) > 0}
                rows.append({"k": k, "client": "keep-alive" if keep_alive else "urllib",
                             "client_p50_ms": round(float(np.median(client_ms)), 3),
                             "server_total_p50_ms": round(float(np.median(server_ms)), 3),
                             "loop_thread_user_sys_ms": [round(x, 2) for x in loop],
                             "other_threads_user_sys_ms": [round(sum(v[i] for v in busy.values()), 2) for i in (0, 1)],
                             "other_threads_busy": len(busy)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(res: dict[str, Any]) -> str:
    """Render the breakdown as a Markdown table (one column per k)."""
    ks = list(res["runs"])
    labels = list(res["runs"][ks[0]])
    lines = [f"### POST /v1/mine in process, n = {res['n']:,}: CPU us per request by component", "",
             f"{res['requests']} requests per k, best of {res['repeats']} passes; threadpool hop run inline "
             f"(a real hop costs {res['hop_us']} us of process CPU, measured apart). Response bytes: "
             + ", ".join(f"k={k}: {res['response_bytes'][k]}" for k in ks)
             + f". Load average at start {res['loadavg']}.", "",
             "| component | " + " | ".join(f"k={k} us" for k in ks) + " |",
             "| --- | " + " | ".join("---:" for _ in ks) + " |"]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(str(res["runs"][k][label]) for k in ks) + " |")
    if res.get("server"):
        lines += ["", "Real `edgemine serve` (1 worker), CPU ms per request by thread (from /proc):", "",
                  "| k | client | client p50 ms | server total p50 ms | loop thread user+sys ms | "
                  "other threads user+sys ms | other threads busy |",
                  "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in res["server"]:
            loop, other = r["loop_thread_user_sys_ms"], r["other_threads_user_sys_ms"]
            lines.append(f"| {r['k']} | {r['client']} | {r['client_p50_ms']} | {r['server_total_p50_ms']} | "
                         f"{loop[0]} + {loop[1]} | {other[0]} + {other[1]} | {r['other_threads_busy']} |")
    lines += ["", f"Command: `{res['command']}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, profile, write JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="200k")
    parser.add_argument("--ks", default="10,100")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-budget", default="4G")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/edgemine-bench"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--name", default="http-profile")
    parser.add_argument("--server", action="store_true",
                        help="also serve the bundle and measure CPU per request by thread (event loop vs workers)")
    args = parser.parse_args(argv)
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)  # as the service runs (its lifespan sets the same)
    threadpool_limits(1, user_api="blas")
    n = parse_size(args.n)
    bundle, _ = bundle_for(n, args.tmp, args.memory_budget)
    res = {"n": n, "requests": args.requests, "repeats": args.repeats, "loadavg": round(os.getloadavg()[0], 2),
           "command": " ".join(["python", *sys.argv]),
           **asyncio.run(profile(bundle, [int(k) for k in args.ks.split(",")], args.requests, args.repeats))}
    if args.server:
        res["server"] = server_threads(bundle, [int(k) for k in args.ks.split(",")], args.requests, args.tmp)
    table = markdown(res)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.name}.json").write_text(json.dumps(res, indent=2))
        (args.out / f"{args.name}.md").write_text(table)
    print(table, flush=True)


if __name__ == "__main__":
    main()
