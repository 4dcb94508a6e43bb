"""Service benchmark: a real `edgemine serve` under load, against the same query in process.

Data: a drive-like bundle of synthetic CLIP-like vectors (benchmarks/synthetic.py), built with
the auto index, sequence/frame/camera metadata and half the rows labeled. Each query is 10
frames of one scene (one recorded sequence). Three measurements, in this order, in one run:

- in process: `Miner.mine` called directly (FAISS single-threaded, as the service runs it);
- latency: one client, one request at a time, at each k, through a plain urllib client (a new
  connection per request) and through one kept-alive connection;
- load: N clients (threads, each with its own kept-alive connection) for a fixed time.

Every HTTP row reports the client-side p50/p99 and the server's own `timings.total_ms` for the
same requests; "HTTP overhead" is client p50 minus server-reported p50 (the edges: connection,
parsing, validation, serialization, threadpool hop).

    python benchmarks/bench_service.py --n 1M --workers 2 --clients 1,4,16 --out benchmarks/results/DATE

The bundle is cached in --tmp (reused when present with the same n). Writes
<out>/service-<n>-w<workers>.json and .md and prints the Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from bench_search import parse_size  # noqa: E402
from synthetic import FRAMES_PER_SEQUENCE, clip_like  # noqa: E402

from edgemine.bundle.layout import ModelInfo  # noqa: E402
from edgemine.bundle.snapshot import load_current  # noqa: E402
from edgemine.indexer.job import IndexOptions, ModelChoice, run_index  # noqa: E402
from edgemine.indexer.sources import Source, SourceItem  # noqa: E402
from edgemine.search.plan import parse_memory  # noqa: E402

EXAMPLES = 10
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # recorded with the command
LABELED = 0.5


def build_drive_bundle(n: int, bundle: Path, budget: str = "4G", seed: int = 0) -> dict[str, Any]:
    """Index n drive-like vectors (half labeled, with metadata) into `bundle`; return the build info."""
    vectors, _ = clip_like(n, 512, seed=seed)
    labeled = np.random.default_rng(seed + 1).random(n) < LABELED
    items = [SourceItem(f"drive/seq{i // FRAMES_PER_SEQUENCE:05d}/frame{i % FRAMES_PER_SEQUENCE:03d}.jpg", None,
                        f"v{i}", {"sequence_id": f"seq{i // FRAMES_PER_SEQUENCE:05d}",
                                  "frame": i % FRAMES_PER_SEQUENCE, "camera": "front"}, bool(labeled[i]))
             for i in range(n)]
    source = Source("embeddings", bundle, items, [], vectors)
    choice = ModelChoice(ModelInfo(identity="byo:bench", name="bench", pretrained="external"), None)
    start = time.perf_counter()
    run_index(source, bundle, choice, progress=False, options=IndexOptions("auto", parse_memory(budget)))
    info = {"n": n, "build_s": round(time.perf_counter() - start, 2), "labeled": float(labeled.mean()),
            "build_peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "index": load_current(bundle).manifest.index.model_dump()}
    (bundle / "bench-build.json").write_text(json.dumps(info, indent=2))
    return info


def bundle_for(n: int, tmp: Path, budget: str) -> tuple[Path, dict[str, Any]]:
    """Return a cached bundle of n vectors (built when missing) and its build info."""
    bundle = tmp / f"service-bundle-{n}"
    info_file = bundle / "bench-build.json"
    if info_file.is_file():
        return bundle, dict(json.loads(info_file.read_text()))
    return bundle, build_drive_bundle(n, bundle, budget)


def queries(ids: list[str], count: int, k: int, seed: int = 0) -> list[bytes]:
    """Return `count` request bodies: 10 frames of one random sequence, top k."""
    rng = np.random.default_rng(seed)
    n_seq = max(1, len(ids) // FRAMES_PER_SEQUENCE)
    bodies = []
    for _ in range(count):
        seq = int(rng.integers(n_seq))
        frames = np.sort(rng.choice(FRAMES_PER_SEQUENCE, EXAMPLES, replace=False))
        rows = [min(len(ids) - 1, seq * FRAMES_PER_SEQUENCE + int(f)) for f in frames]
        bodies.append(json.dumps({"positive_ids": [ids[r] for r in rows], "k": k}).encode())
    return bodies


def percentiles(ms: list[float]) -> dict[str, float]:
    """Return p50/p99/mean of a list of milliseconds."""
    arr = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(arr, 50)), 3), "p99_ms": round(float(np.percentile(arr, 99)), 3),
            "mean_ms": round(float(arr.mean()), 3)}


def in_process(bundle: Path, bodies: list[bytes]) -> dict[str, Any]:
    """Time Miner.mine directly on the bodies (after a warm-up pass)."""
    import faiss
    from threadpoolctl import threadpool_limits

    from edgemine.service.query import MineQuery
    from edgemine.service.runtime import Runtime

    faiss.omp_set_num_threads(1)  # as the service runs them (faiss_threads and blas_threads default 1)
    threadpool_limits(1, user_api="blas")
    miner = Runtime(bundle).current().miner
    parsed = [MineQuery.model_validate_json(b) for b in bodies]
    for q in parsed[:5]:
        miner.mine(q)
    times, totals = [], []
    cpu0 = time.thread_time()  # BLAS and FAISS run on this thread: its CPU time is the query's
    for q in parsed:
        t0 = time.perf_counter()
        result = miner.mine(q)
        times.append((time.perf_counter() - t0) * 1e3)
        totals.append(result.timings.total_ms)
    cpu = (time.thread_time() - cpu0) * 1e3 / len(parsed)
    return {**percentiles(times), "miner_total_p50_ms": round(float(np.median(totals)), 3),
            "cpu_ms_per_query": round(cpu, 3), "requests": len(times)}


class Client:
    """One HTTP client: a kept-alive http.client connection, or plain urllib (new connection each time)."""

    def __init__(self, base: str, keep_alive: bool) -> None:
        self.base = base
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60) if keep_alive else None

    def mine(self, body: bytes) -> tuple[float, float]:
        """Post one query; return (client ms, server-reported total ms)."""
        headers = {"Content-Type": "application/json"}
        t0 = time.perf_counter()
        if self.conn is None:
            request = urllib.request.Request(f"{self.base}/v1/mine", data=body, headers=headers)
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
                status = response.status
        else:
            self.conn.request("POST", "/v1/mine", body, headers)
            response = self.conn.getresponse()
            raw = response.read()
            status = response.status
        took = (time.perf_counter() - t0) * 1e3
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {raw[:300]!r}")
        return took, float(json.loads(raw)["timings"]["total_ms"])


def _row(client_ms: list[float], server_ms: list[float], seconds: float | None = None) -> dict[str, Any]:
    row = {**percentiles(client_ms), "server_total_p50_ms": round(float(np.median(server_ms)), 3),
           "server_total_p99_ms": round(float(np.percentile(server_ms, 99)), 3),
           "requests": len(client_ms)}
    row["http_overhead_p50_ms"] = round(row["p50_ms"] - row["server_total_p50_ms"], 3)
    if seconds:
        row["requests_per_s"] = round(len(client_ms) / seconds, 1)
    return row


def server_cpu_s(base: str) -> float:
    """Return the CPU seconds used so far by the `edgemine serve` listening at `base` and its workers."""
    port = base.rsplit(":", 1)[1]
    out = subprocess.run(["pgrep", "-f", f"serve --port {port} "], capture_output=True, text=True).stdout.split()
    pids = [int(p) for p in out]
    for pid in list(pids):
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            pids += [int(c) for c in task.read_text().split()]
    total = 0.0
    for pid in set(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def sequential(bases: dict[str, str], bodies: list[bytes], keep_alive: bool) -> dict[str, dict[str, Any]]:
    """One client, one request at a time; with several servers, request by request in turn
    (so that load from elsewhere on the machine falls on all of them alike)."""
    clients = {name: Client(base, keep_alive) for name, base in bases.items()}
    for client in clients.values():
        for body in bodies[:5]:
            client.mine(body)
    client_ms: dict[str, list[float]] = {name: [] for name in clients}
    server_ms: dict[str, list[float]] = {name: [] for name in clients}
    names = list(clients)
    cpu0 = {name: server_cpu_s(base) for name, base in bases.items()}
    for i, body in enumerate(bodies):
        for name in names[i % len(names):] + names[:i % len(names)]:
            c, s = clients[name].mine(body)
            client_ms[name].append(c)
            server_ms[name].append(s)
    rows = {name: _row(client_ms[name], server_ms[name]) for name in names}
    for name, base in bases.items():
        # CPU time does not count the waits for a core on a shared machine: the load-robust figure.
        rows[name]["server_cpu_ms_per_request"] = round((server_cpu_s(base) - cpu0[name]) * 1e3 / len(bodies), 3)
    return rows


def load(base: str, bodies: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` threads, each with its own kept-alive connection, for `seconds`."""
    client_ms: list[float] = []
    server_ms: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    errors: list[str] = []

    def worker(i: int) -> None:
        client = Client(base, keep_alive=True)
        j = i
        while time.perf_counter() < stop:
            try:
                c, s = client.mine(bodies[j % len(bodies)])
            except Exception as exc:  # reported in the result, not hidden
                errors.append(repr(exc))
                return
            with lock:
                client_ms.append(c)
                server_ms.append(s)
            j += clients

    start = time.perf_counter()
    cpu0 = server_cpu_s(base)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    row = _row(client_ms, server_ms, time.perf_counter() - start)
    row["server_cpu_ms_per_request"] = round((server_cpu_s(base) - cpu0) * 1e3 / max(1, len(client_ms)), 3)
    row["clients"] = clients
    if errors:
        row["errors"] = errors[:5]
    return row


def serve(bundle: Path, workers: int, log_dir: Path, extra_args: list[str], root: Path = ROOT,
          name: str = "server") -> Any:
    """Start `edgemine serve` over the bundle from the source tree `root` (tests/support/live_server.py)."""
    from tests.support.live_server import serving

    return serving(bundle, log_dir, *extra_args, workers=workers, env={"PYTHONPATH": str(root)}, name=name,
                   ready_timeout=600)


def markdown(res: dict[str, Any]) -> str:
    """Render one run as Markdown."""
    b = res["bundle"]
    lines = [f"### Service: n = {b['n']:,} x 512, {res['workers']} worker(s), k = {res['ks']}", "",
             f"Index `{b['index']['factory']}` (params {b['index']['search_params']}), "
             f"{b['labeled']:.0%} labeled, queries of {EXAMPLES} frames of one scene. "
             f"Machine: {res['cpus']} CPUs shared with other jobs (load average at start {res['loadavg']}).", "",
             "| run | k | clients | requests | req/s | client p50 ms | client p99 ms | server total p50 ms | "
             "HTTP overhead p50 ms | in-process p50 ms | server CPU ms/request | in-process CPU ms/query |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["runs"]:
        inproc = res["in_process"][str(r["k"])]
        lines.append(f"| {r['run']} | {r['k']} | {r.get('clients', 1)} | {r['requests']} | "
                     f"{r.get('requests_per_s', '')} | {r['p50_ms']} | {r['p99_ms']} | {r['server_total_p50_ms']} | "
                     f"{r['http_overhead_p50_ms']} | {inproc['p50_ms']} | {r.get('server_cpu_ms_per_request', '')} | "
                     f"{inproc['cpu_ms_per_query']} |")
    lines += ["", f"Command: `{res['command']}`"]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build (or reuse) the bundle, then measure in process, sequentially and under load."""
    n = parse_size(args.n)
    bundle, info = bundle_for(n, args.tmp, args.memory_budget)
    ids = load_current(bundle).image_ids
    res: dict[str, Any] = {"bundle": info, "workers": args.workers, "ks": args.ks, "cpus": os.cpu_count(),
                           "loadavg": os.getloadavg()[0], "machine": platform.machine(),
                           "command": " ".join([*(f"{v}={os.environ[v]}" for v in THREAD_VARIABLES if v in os.environ),
                                                "python", *sys.argv]), "in_process": {}, "runs": []}
    per_k = {k: queries(ids, args.requests, k, seed=k) for k in args.ks}
    for k, bodies in per_k.items():
        res["in_process"][str(k)] = in_process(bundle, bodies)
        print(json.dumps({"in_process": k, **res["in_process"][str(k)]}), flush=True)
    log_dir = args.tmp / "service-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        bases = {"this": stack.enter_context(serve(bundle, args.workers, log_dir, args.serve_args))}
        if args.baseline_root:
            # Another source tree (e.g. `git archive` of an older commit), served side by side.
            bases["baseline"] = stack.enter_context(serve(bundle, args.workers, log_dir, args.serve_args,
                                                          args.baseline_root, "baseline"))
        for k, bodies in per_k.items():
            for client, keep in (("urllib", False), ("keep-alive", True)):
                for server, row in sequential(bases, bodies, keep).items():
                    label = f"sequential {client}" + ("" if server == "this" else f" ({server})")
                    res["runs"].append({"run": label, "k": k, **row})
                    print(json.dumps(res["runs"][-1]), flush=True)
        for clients in args.clients:
            for k in args.load_ks:
                row = {"run": "load", "k": k, **load(bases["this"], per_k[k], clients, args.seconds)}
                res["runs"].append(row)
                print(json.dumps(row), flush=True)
    return res


def main(argv: list[str] | None = None, after: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Parse arguments, run, write JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="200k", help="vectors: 200k, 1M, ...")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ks", default="10,100", help="k for the sequential runs")
    parser.add_argument("--load-ks", default="100", help="k for the load runs")
    parser.add_argument("--clients", default="", help="concurrent clients for the load runs, e.g. 1,4,16")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each load run")
    parser.add_argument("--requests", type=int, default=200, help="requests per sequential run")
    parser.add_argument("--memory-budget", default="4G")
    parser.add_argument("--serve-args", default="", help="extra `edgemine serve` arguments")
    parser.add_argument("--baseline-root", type=Path, default=None,
                        help="also serve from this source tree; sequential runs alternate between the two")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/edgemine-bench"))
    parser.add_argument("--out", type=Path, default=Path("bench-results/service"))
    parser.add_argument("--name", default=None, help="file name stem (default service-<n>-w<workers>)")
    args = parser.parse_args(argv)
    args.ks = [int(x) for x in args.ks.split(",")]
    args.load_ks = [int(x) for x in args.load_ks.split(",") if x]
    args.clients = [int(x) for x in args.clients.split(",") if x]
    args.serve_args = args.serve_args.split()
    args.tmp.mkdir(parents=True, exist_ok=True)
    res = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"service-{args.n}-w{args.workers}"
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=2))
    table = markdown(res)
    (args.out / f"{stem}.md").write_text(table)
    print(table, flush=True)


if __name__ == "__main__":
    main()
