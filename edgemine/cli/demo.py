"""`edgemine demo`: generate a synthetic drive, index it, and serve it."""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path
from typing import Annotated

import typer

from edgemine.bundle.layout import BundlePaths
from edgemine.bundle.state import open_state
from edgemine.cli.common import domain_errors
from edgemine.cli.index import model_choice, print_report
from edgemine.indexer import ModelChoice, read_manifest_source, run_index
from edgemine.models import DEFAULT_MODEL, DEFAULT_PRETRAINED
from edgemine.models.base import ModelUnavailable

DEMO_HOST = "127.0.0.1"
RANDOM_WEIGHTS_BANNER = """
!!! RUNNING WITH RANDOM WEIGHTS !!!
The pretrained CLIP weights ({model} / {tag}) are not available here:
  {reason}
The demo continues with randomly initialised weights (--pretrained none). Rankings then follow
colour and layout only, not meaning: night frames find night frames, but text prompts are noise.
For real rankings run on a machine that can download the weights, or pass a checkpoint file:
  edgemine demo --pretrained /path/to/open_clip_pytorch_model.bin
"""


def _pick_model(model: str, pretrained: str, batch_size: int) -> ModelChoice:
    if pretrained != "auto":
        return model_choice(model, pretrained, None, batch_size)
    try:
        return model_choice(model, DEFAULT_PRETRAINED, None, batch_size)
    except ModelUnavailable as exc:
        typer.secho(RANDOM_WEIGHTS_BANNER.format(model=model, tag=DEFAULT_PRETRAINED, reason=exc),
                    fg=typer.colors.YELLOW, err=True)
        return model_choice(model, "none", None, batch_size)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: SO_REUSEADDR, so a port left in TIME_WAIT by a previous run counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def require_free_port(host: str, port: int) -> None:
    """Refuse a port that is already in use, suggesting a free one, before any slow work starts."""
    if _port_free(host, port):
        return
    suggestion = next((p for p in range(port + 1, min(port + 50, 65536)) if _port_free(host, p)), None)
    if suggestion is None:
        with socket.socket() as sock:
            sock.bind((host, 0))
            suggestion = int(sock.getsockname()[1])
    raise ValueError(f"port {port} on {host} is already in use (another edgemine serve?); "
                     f"choose another one with --port {suggestion}")


def import_demo_truth(bundle: Path, data_dir: Path) -> None:
    """Import the demo's ground truth and its simulated v7 and v8 predictions into the bundle."""
    from edgemine.demo.truth import MODELS, TRUTH_FILE, prediction_file
    from edgemine.scenarios.store import import_annotations, import_predictions

    state = open_state(BundlePaths(bundle))
    import_annotations(state, data_dir / TRUTH_FILE)
    for m in MODELS:
        import_predictions(state, data_dir / prediction_file(m.name), m.name)


def scenario_steps(bundle: Path, data_dir: Path, imported: bool) -> str:
    """The commands that take the demo from its ground truth to a failing scenario gate."""
    from edgemine.demo.truth import MODELS, TRUTH_FILE, prediction_file

    b = f"--bundle {shlex.quote(str(bundle))}"
    where = f"--scenarios {shlex.quote(str(data_dir / 'scenarios'))} {b}"
    lines = ["  scenario regression tests: ground truth and two simulated detectors, v7 and v8 (v8 is",
             "  better overall but lost the night crossings v7 had been fixed on)"
             + (" are imported:" if imported else ":")]
    if not imported:  # importing marks every frame labeled: mine first (or use --ground-truth)
        lines.append(f"    edgemine annotations import {shlex.quote(str(data_dir / TRUTH_FILE))} {b}")
        lines += [f"    edgemine predictions import "
                  f"{shlex.quote(str(data_dir / prediction_file(m.name)))} --model {m.name} {b}"
                  for m in MODELS]
    lines += [f"    edgemine scenario refresh {where}",
              f"    edgemine evaluate --model v8 --slice-by time_of_day {where}",
              f"    edgemine gate --candidate v8 --baseline v7 --markdown gate.md --html gate.html {where}"]
    return "\n".join(lines) + "\n"


def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo data and bundle go.")] = Path("demo-data"),
    scenes: Annotated[int, typer.Option(min=10, max=5000, help="Frames to generate.")] = 300,
    model: Annotated[str, typer.Option(help="open_clip model name.")] = DEFAULT_MODEL,
    pretrained: Annotated[str, typer.Option(
        help="Tag, checkpoint file, 'none', or 'auto' (the default tag if available, else random "
             "weights, announced loudly).")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 32,
    workers: Annotated[int, typer.Option(min=0, help="Decoding worker processes.")] = 1,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Start the service at the end.")] = True,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port for the service.")] = 8000,
    ground_truth: Annotated[bool, typer.Option(
        help="Also import the ground truth and the simulated v7/v8 predictions into the bundle. "
             "This marks every frame labeled, so mining (which skips labeled frames) then finds "
             "nothing: without it the demo prints the import commands to run after mining.")] = False,
) -> None:
    """Generate a synthetic recorded drive with rare edge cases, index it, and serve it."""
    from edgemine.demo.scenes import generate_demo_dataset

    data_dir, bundle = directory / "data", directory / "bundle"
    with domain_errors():
        if serve_after:
            require_free_port(DEMO_HOST, port)  # now, not after minutes of generating and indexing
        manifest = data_dir / "manifest.csv"
        # a data folder from before the demo shipped ground truth is regenerated (same frames)
        if not manifest.is_file() or not (data_dir / "ground_truth.jsonl").is_file():
            typer.echo(f"generating {scenes} synthetic frames in {data_dir} ...", err=True)
            generate_demo_dataset(data_dir, n_scenes=scenes)
        else:
            typer.echo(f"reusing the generated frames in {data_dir} (delete it to regenerate)", err=True)
        choice = _pick_model(model, pretrained, batch_size)
        typer.echo(f"indexing with {choice.info.identity} into {bundle} ...", err=True)
        report = run_index(read_manifest_source(manifest), bundle, choice,
                           batch_size=batch_size, workers=workers)
        if ground_truth:
            import_demo_truth(bundle, data_dir)
    print_report(report)

    source = read_manifest_source(manifest)
    night = [i.image_id for i in source.items
             if i.metadata.get("edge_case") == "pedestrian_crosswalk_night"][:3]
    body = json.dumps({"positive_ids": night, "k": 20, "strategy": "max",
                       "group_by": "sequence_id", "max_per_group": 5})
    typer.echo(
        "\nNext steps\n"
        f"  failure examples (pedestrian on a crosswalk at night): {', '.join(night)}\n"
        f"  mine from the CLI:\n"
        f"    edgemine mine --bundle {bundle} " + " ".join(f"-p {shlex.quote(i)}" for i in night) + " -k 20\n"
        f"  mine over HTTP (paste into another terminal once the service is up):\n"
        f"    curl -s -X POST http://127.0.0.1:{port}/v1/mine -H 'content-type: application/json' "
        f"-d {shlex.quote(body)}\n"
        f"  review page (examples, candidates, queue a batch): http://127.0.0.1:{port}/\n"
        f"  API docs: http://127.0.0.1:{port}/docs\n"
        + scenario_steps(bundle, data_dir, imported=ground_truth)
    )
    if serve_after:
        from edgemine.cli.serve import serve

        serve(bundle=bundle, host=DEMO_HOST, port=port)
