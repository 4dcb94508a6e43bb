"""`edgemine serve` and `edgemine mine`."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from edgemine.bundle.layout import BundlePaths
from edgemine.bundle.snapshot import load_current
from edgemine.bundle.state import open_state
from edgemine.cli.common import StateUrl, domain_errors
from edgemine.service.config import LOCAL_HOSTS
from edgemine.service.query import MineQuery, MineResult, Range, Strategy

_FILTER = re.compile(r"^\s*([\w.-]+)\s*(>=|<=|!=|=|>|<|\s+not\s+in\s+|\s+in\s+)\s*(.+?)\s*$")
_OPS = {">=": "gte", "<=": "lte", "!=": "ne", "=": "eq", ">": "gt", "<": "lt"}


def _value(text: str) -> str | int | float | bool:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_filters(specs: list[str]) -> dict[str, Range]:
    """Parse `col=v`, `col!=v`, `col>=v`, `col<v`, `col in a,b`, `col not in a,b` into filters."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        match = _FILTER.match(spec)
        if not match:
            raise ValueError(f"cannot parse filter {spec!r}; use col=value, col>=value, "
                             "col in a,b or col not in a,b")
        column, op, raw = match.group(1), match.group(2).strip(), match.group(3)
        cond = out.setdefault(column, {})
        if op in ("in", "not in"):
            cond["in" if op == "in" else "not_in"] = [_value(v.strip()) for v in raw.split(",")]
        else:
            cond[_OPS[op]] = _value(raw)
    return {k: Range.model_validate(v) for k, v in out.items()}


def _allowed_hosts(bind: str, given: list[str]) -> list[str]:
    """Host names to accept: the given ones, else EDGEMINE_ALLOWED_HOSTS, else local names; plus `bind`."""
    env = [h.strip() for h in os.environ.get("EDGEMINE_ALLOWED_HOSTS", "").split(",") if h.strip()]
    hosts = list(given) or env or list(LOCAL_HOSTS)
    if bind not in ("", "0.0.0.0", "::") and bind not in hosts:
        hosts.append(bind)
    return hosts


_ORIGIN = re.compile(r"^https?://[^/?#\s]+$")


def check_origins(origins: list[str]) -> list[str]:
    """Refuse CORS origins a browser never sends (a path, a trailing slash, no scheme), naming them."""
    for origin in origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise ValueError(f"CORS origin {origin!r} is not an origin: write scheme://host[:port] with no path or "
                             "trailing slash (e.g. http://localhost:8080), or * for any")
    return origins


def serve(
    bundle: Annotated[Path | None, typer.Option(
        help="Bundle directory (default: $EDGEMINE_BUNDLE, else ./bundle).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    worker_healthcheck_timeout: Annotated[int, typer.Option(
        min=1, help="Seconds a worker may take to answer the supervisor's health check (with --workers > 1) "
                    "before it is killed and restarted; loading a large bundle on a busy host takes more than "
                    "uvicorn's default of 5.")] = 120,
    expected_model: Annotated[str | None, typer.Option(
        help="Refuse a bundle built with another model (default: $EDGEMINE_EXPECTED_MODEL).")] = None,
    public_url: Annotated[str | None, typer.Option(
        help="Absolute base URL for image links in exports (default: $EDGEMINE_PUBLIC_URL).")] = None,
    scenarios: Annotated[Path | None, typer.Option(
        "--scenarios", help="Scenarios folder for /v1/scenarios and /v1/evaluations "
                            "(default: $EDGEMINE_SCENARIOS, else ./scenarios).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    api_key: Annotated[str | None, typer.Option(
        envvar="EDGEMINE_API_KEY", show_default=False,
        help="Require `Authorization: Bearer KEY` on every /v1 call but /v1/health (prefer the "
             "EDGEMINE_API_KEY variable: command lines are visible to other users).")] = None,
    allowed_host: Annotated[list[str] | None, typer.Option(
        "--allowed-host", show_default=False,
        help="Host name clients may reach the service by (repeat; `*` any, `*.example.com` a domain). "
             "Default: EDGEMINE_ALLOWED_HOSTS (comma-separated), else localhost, 127.0.0.1, ::1; "
             "plus --host when it is a specific address.")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", show_default=False,
        help="Web origin allowed to call the API and load images from the browser (repeat), e.g. Label "
             "Studio's http://localhost:8080. Default: EDGEMINE_CORS_ORIGINS (comma-separated or a JSON "
             "list), else none.")] = None,
    state_url: StateUrl = None,
) -> None:
    """Serve the mining API (and /docs) over a bundle."""
    import uvicorn

    from edgemine.models.weights import same_model
    from edgemine.service.config import Settings

    with domain_errors():
        # Options given on the command line win; the others keep their EDGEMINE_* (or .env) value.
        given: dict[str, Any] = {"bundle": bundle, "expected_model": expected_model, "public_url": public_url,
                                 "scenarios": scenarios, "cors_origins": cors_origin or None}
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
        check_origins(settings.cors_origins)
        bundle = settings.bundle
        snap = load_current(bundle)  # refuse to start on a missing or corrupt bundle
        identity = snap.manifest.model.identity
        if settings.expected_model and not same_model(identity, settings.expected_model):
            raise ValueError(f"bundle {bundle} was built with {identity!r}, not {settings.expected_model!r}")
        if state_url:
            # Fail here, naming the endpoint, rather than in every worker (and migrate once).
            open_state(BundlePaths(bundle), state_url).close()
    # Workers build their settings from the environment: hand them the resolved values.
    os.environ["EDGEMINE_BUNDLE"] = str(bundle.resolve())
    os.environ["EDGEMINE_PUBLIC_URL"] = settings.public_url
    os.environ["EDGEMINE_SCENARIOS"] = str(settings.scenarios.resolve())
    if settings.expected_model:
        os.environ["EDGEMINE_EXPECTED_MODEL"] = settings.expected_model
    os.environ["EDGEMINE_ALLOWED_HOSTS"] = ",".join(_allowed_hosts(host, allowed_host or []))
    os.environ["EDGEMINE_CORS_ORIGINS"] = json.dumps(settings.cors_origins)
    if api_key:
        os.environ["EDGEMINE_API_KEY"] = api_key
    if state_url:
        os.environ["EDGEMINE_STATE_URL"] = state_url
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="edgemine-metrics-")
    typer.echo(f"serving {bundle} (version {snap.version}, {snap.manifest.counts.images} images) "
               f"on http://{host}:{port}  docs: http://{host}:{port}/docs"
               f"{'  (API key required)' if api_key else ''}"
               f"{'  CORS origins: ' + ', '.join(settings.cors_origins) if settings.cors_origins else ''}", err=True)
    uvicorn.run("edgemine.service.app:create_app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, timeout_worker_healthcheck=worker_healthcheck_timeout)


def _print_table(result: MineResult) -> None:
    typer.echo(f"{'rank':>4}  {'score':>7}  {'image_id':<40} {'nearest example':<30} {'sim':>6}")
    for c in result.candidates:
        typer.echo(f"{c.rank:>4}  {c.score:7.4f}  {c.image_id:<40} {c.nearest_example_id:<30} "
                   f"{c.nearest_example_similarity:6.3f}")
    typer.echo(f"{len(result.candidates)} candidates of {result.eligible} eligible; bundle version "
               f"{result.bundle_version}; {result.timings.total_ms:.1f} ms", err=True)


def write_result(result: MineResult, out: Path | None, fmt: str) -> None:
    """Write candidates as a table (stdout), JSONL or CSV."""
    rows = [c.model_dump() for c in result.candidates]
    if fmt == "table" and out is None:
        _print_table(result)
        return
    fh = out.open("w", newline="") if out else sys.stdout
    try:
        if fmt == "csv":
            meta = sorted({k for r in rows for k in r["metadata"]})
            writer = csv.writer(fh)
            base = ["rank", "image_id", "score", "nearest_example_id", "nearest_example_similarity", "state"]
            writer.writerow(base + meta)
            for r in rows:
                writer.writerow([r[k] for k in base] + [r["metadata"].get(k) for k in meta])
        else:
            for r in rows:
                fh.write(json.dumps(r, default=str) + "\n")
    finally:
        if out:
            fh.close()
    if out:
        typer.echo(f"wrote {len(rows)} candidates to {out}", err=True)


def mine(
    bundle: Annotated[Path, typer.Option(help="Bundle directory.")] = Path("bundle"),
    positive: Annotated[list[str] | None, typer.Option("--positive", "-p", help="Failure image id (repeat).")] = None,
    negative: Annotated[list[str] | None, typer.Option("--negative", "-n", help="Negative image id (repeat).")] = None,
    text: Annotated[list[str] | None, typer.Option("--text", "-t", help="Text prompt (repeat).")] = None,
    k: Annotated[int, typer.Option("-k", help="Candidates to return (1..1000).")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many (best-effort paging; prefer --cursor).")] = 0,
    cursor: Annotated[str | None, typer.Option(help="Next page: the cursor the previous page printed.")] = None,
    strategy: Annotated[str, typer.Option(help="mean, max, rrf or probe.")] = "max",
    filter_: Annotated[list[str] | None, typer.Option(
        "--filter", "-f", help="e.g. 'time_of_day in night,dusk'.")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Image id to exclude (repeat).")] = None,
    group_by: Annotated[str | None, typer.Option(help="Metadata column for --max-per-group.")] = None,
    max_per_group: Annotated[int | None, typer.Option(help="At most this many per group.")] = None,
    dedup: Annotated[float | None, typer.Option(help="Drop near-duplicates at this cosine similarity.")] = None,
    min_score: Annotated[float | None, typer.Option(help="Drop candidates below this score.")] = None,
    session: Annotated[str | None, typer.Option(
        help="Review session, stored with the query (see `verdicts import --session`).")] = None,
    use_verdicts: Annotated[bool, typer.Option(
        help="Add the session's accepted images as positives and its rejected ones as negatives.")] = False,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, jsonl or csv.")] = "table",
    state_url: StateUrl = None,
) -> None:
    """Mine unlabeled candidates like the given failures (the same call as POST /v1/mine)."""
    from edgemine.service.runtime import Runtime

    with domain_errors():
        if fmt not in ("table", "jsonl", "csv"):
            raise ValueError(f"--format must be table, jsonl or csv, not {fmt!r}")
        if strategy not in ("mean", "max", "rrf", "probe"):
            raise ValueError(f"--strategy must be mean, max, rrf or probe, not {strategy!r}")
        strat: Strategy = strategy  # type: ignore[assignment]
        try:
            query = MineQuery(positive_ids=positive or [], negative_ids=negative or [],
                              texts=text or [], k=k, offset=offset, cursor=cursor, strategy=strat,
                              filters=dict(parse_filters(filter_ or [])), exclude_ids=exclude or [],
                              group_by=group_by, max_per_group=max_per_group,
                              dedup_threshold=dedup, min_score=min_score, session_id=session,
                              use_verdicts=use_verdicts)
        except Exception as exc:  # pydantic's ValidationError, shown as one clear line
            raise ValueError(str(exc).replace("\n", "; ")) from exc
        result = Runtime(bundle, state_url=state_url).current().miner.mine(query)
    write_result(result, out, "jsonl" if fmt == "table" and out else fmt)
    typer.echo(f"query_id: {result.query_id}", err=True)
    if result.next_cursor:
        typer.echo(f"next page: --cursor {result.next_cursor}", err=True)
