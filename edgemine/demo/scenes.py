"""Procedural synthetic "recorded drive" dataset: camera frames, a manifest.csv and ground truth."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgemine.demo.objects import ObjectMap, Pen, SceneObject
from edgemine.demo.scenario_files import demo_scenarios, write_scenarios
from edgemine.demo.truth import MODELS, TRUTH_FILE, Frame, prediction_file, predictions_jsonl, truth_jsonl

EDGE_CASES = ("pedestrian_crosswalk_night", "reflection_wet_road", "pedestrian_occluded")
MANIFEST_COLUMNS = ("image_id", "path", "sequence_id", "frame", "timestamp", "time_of_day",
                    "weather", "sensor", "scene", "edge_case", "labeled")
_SS = 2  # draw at 2x and downscale: thin lane marks and limbs come out antialiased
_SPAN = 12.0  # depth range that static roadside objects wrap around in
_SKY = {"day": ((90, 150, 235), (205, 222, 245)), "dusk": ((120, 90, 200), (255, 175, 95)),
        "night": ((40, 45, 110), (90, 85, 140))}
_AMBIENT = {"day": (1.0, 1.0, 1.0), "dusk": (0.95, 0.72, 0.55), "night": (0.2, 0.22, 0.32)}
_FOG = {"day": (200, 202, 208), "dusk": (190, 160, 140), "night": (45, 48, 58)}
Color = tuple[int, int, int]
Draw = ImageDraw.ImageDraw


@dataclass(frozen=True)
class DemoDataset:
    """Where a generated demo dataset lives and which of its images are edge cases."""

    root: Path
    images_dir: Path
    manifest_path: Path
    image_ids: list[str]
    edge_case_ids: list[str]
    ground_truth_path: Path | None = None  # ground_truth.jsonl (detections, COCO boxes)
    prediction_paths: dict[str, Path] = field(default_factory=dict)  # simulated model -> JSONL
    scenarios_dir: Path | None = None  # scenario YAMLs for `edgemine scenario refresh`


@dataclass(frozen=True)
class _Seq:
    index: int
    seq_id: str
    n_frames: int
    time_of_day: str
    weather: str
    sensor: str
    scene: str
    crosswalk: bool
    start: datetime
    edges: dict[int, str]


def _plan(n_scenes: int, seed: int) -> list[_Seq]:
    """Split n_scenes into sequences, pick their settings and place the rare edge-case runs."""
    rng = np.random.default_rng(seed)
    n_seq = max(1, min(20, max(12, n_scenes // 20), n_scenes // 2))
    base = min(2, n_scenes // n_seq)  # >= 2 frames each so every sequence has a consecutive pair
    w = rng.uniform(0.6, 1.4, n_seq)
    lengths = base + np.floor(w / w.sum() * (n_scenes - base * n_seq)).astype(int)
    lengths[np.argsort(-w, kind="stable")[: n_scenes - int(lengths.sum())]] += 1
    # ~4% edge frames overall, each kind split over up to two sequences so mining has to generalise
    per_kind = max(1, round(0.04 * n_scenes / len(EDGE_CASES)))
    order = [int(i) for i in rng.permutation(n_seq)]
    edge_seqs: dict[int, tuple[str, int]] = {}
    for kind in EDGE_CASES:
        reps = min(2, per_kind)
        for j in range(reps):
            if len(edge_seqs) < n_seq:
                edge_seqs[order[len(edge_seqs)]] = (kind, per_kind // reps + (j < per_kind % reps))
    seqs = []
    for i in range(n_seq):
        kind, n_edge = edge_seqs.get(i, ("", 0))
        tod = str(rng.choice(["day", "dusk", "night"], p=[0.55, 0.2, 0.25]))
        weather = str(rng.choice(["clear", "rain", "fog"], p=[0.6, 0.25, 0.15]))
        scene = str(rng.choice(["urban", "suburban", "highway"], p=[0.45, 0.3, 0.25]))
        sensor = "rear_cam" if rng.random() < 0.25 else "front_cam"
        crosswalk = scene != "highway" and rng.random() < 0.4
        if kind:  # an edge case only makes sense in a matching setting, so it overrides the draw
            sensor, scene, crosswalk = "front_cam", "urban", kind == EDGE_CASES[0]
            tod, weather = {EDGE_CASES[0]: ("night", "clear"), EDGE_CASES[2]: ("day", "clear"),
                            EDGE_CASES[1]: ("night", "rain")}[kind]
        hour = {"day": int(rng.integers(8, 16)), "dusk": int(rng.integers(17, 19)), "night": 21}[tod]
        start = datetime(2026, 1, 3, tzinfo=UTC) + timedelta(
            days=i * 9 + int(rng.integers(0, 7)), hours=hour,
            minutes=int(rng.integers(0, 60)), seconds=int(rng.integers(0, 60)))
        length, n_edge = int(lengths[i]), min(n_edge, int(lengths[i]))
        first = int(rng.integers(min(1, length - n_edge), length - n_edge + 1))
        edges = {f: kind for f in range(first, first + n_edge)} if kind else {}
        seqs.append(_Seq(i, f"drive_{i:03d}", length, tod, weather, sensor, scene, crosswalk,
                         start, edges))
    return seqs


def _person(d: Pen, x: float, y: float, h: float, coat: Color, step: float) -> None:
    """Blob-and-stick pedestrian with feet at (x, y)."""
    lw, s, hip, sh = max(1, round(h * 0.09)), 0.12 * h * step, y - 0.47 * h, y - 0.8 * h
    for sign in (1, -1):
        d.line([(x, hip), (x + sign * (0.1 * h - s), y)], fill=(35, 35, 55), width=lw)
        d.line([(x + sign * 0.1 * h, sh), (x + sign * (0.13 * h + s), hip + 0.03 * h)],
               fill=coat, width=lw)
    d.ellipse((x - 0.12 * h, sh, x + 0.12 * h, hip + 0.06 * h), fill=coat)
    d.ellipse((x - 0.08 * h, y - h, x + 0.08 * h, y - 0.84 * h), fill=(225, 190, 160))


def _car(d: Pen, x: float, y: float, w: float, col: Color, front: bool, glow: Draw | None) -> None:
    """Car seen from behind (tail lights) or from the front (headlights), wheels at y."""
    for sx in (-1, 1):
        d.rectangle((x + sx * 0.44 * w - 0.09 * w, y - 0.16 * w, x + sx * 0.44 * w + 0.09 * w, y),
                    fill=(18, 18, 18))
    d.rectangle((x - w / 2, y - 0.48 * w, x + w / 2, y - 0.1 * w), fill=col)
    # cabin, then its window inset: (bottom half-width, bottom, top half-width, top), in car widths
    for (bw, by, tw, ty), fill in (((0.4, 0.47, 0.3, 0.78), tuple(int(c * 0.6) for c in col)),
                                   ((0.33, 0.5, 0.26, 0.74), (120, 140, 165))):
        d.polygon([(x - bw * w, y - by * w), (x - tw * w, y - ty * w), (x + tw * w, y - ty * w),
                   (x + bw * w, y - by * w)], fill=fill)
    lamp = (255, 240, 200) if front else (210, 25, 25)
    for sx in (-1, 1):
        lx = x + sx * 0.38 * w
        box = (lx - 0.08 * w, y - 0.42 * w, lx + 0.08 * w, y - 0.32 * w)
        d.rectangle(box, fill=lamp)
        if glow is not None:
            glow.ellipse(box, fill=lamp)


@dataclass(frozen=True)
class _View:
    """Pinhole-ish road camera: depth z >= 1 maps to a row between horizon and image bottom."""

    W: int
    H: int
    hz: float  # horizon row
    vx: float  # vanishing point column
    v: float  # forward speed, depth units per frame
    frame: int

    def at(self, z0: float, u: float) -> tuple[float, float, float, float]:
        """Screen x, y, road half-width and current depth of world point (z0, lateral u)."""
        # static objects wrap around in depth so long sequences never run out of scenery
        z = 1.0 + (z0 - 1.0 - self.v * self.frame) % _SPAN
        t, hw = 1.0 / z, 0.62 * self.W / z
        return self.vx + (self.W / 2 - self.vx) * t + u * hw, self.hz + (self.H - self.hz) * t, hw, z

    def quad(self, z: float, dz: float, u: float, du: float) -> list[tuple[float, float]]:
        """Screen polygon of a flat road patch: road markings are drawn in perspective."""
        return [self.at(*p)[:2] for p in ((z, u), (z, u + du), (z + dz, u + du), (z + dz, u))]


def _rgb(values: np.ndarray) -> Color:
    return (int(values[0]), int(values[1]), int(values[2]))


def _skyline(d: Draw, gd: Draw, lay: np.random.Generator, cam: _View, seq: _Seq) -> None:
    """Buildings (lit windows at night), houses or hills along the horizon."""
    # the skyline follows the camera heading at reduced parallax, so it drifts a little per frame
    x, hz = -cam.W * 0.5 + (cam.vx - cam.W / 2) * 0.3, cam.hz
    while x < cam.W * 1.5:
        bw = cam.W * float(lay.uniform(0.08, 0.2))
        if seq.scene == "highway":
            bh = cam.H * float(lay.uniform(0.03, 0.1))
            d.ellipse((x, hz - bh, x + bw * 2, hz + bh), fill=(70, 110, 80))
        else:
            bh = cam.H * float(lay.uniform(0.05, 0.3 if seq.scene == "urban" else 0.12))
            d.rectangle((x, hz - bh, x + bw, hz), fill=_rgb(lay.integers(70, 170, 3)))
            lit = lay.random(64) < (0.35 if seq.time_of_day == "night" else 0.0)
            for n in range(64):
                wx, wy = n // 32, n % 32
                box = (x + bw * (0.2 + 0.45 * wx), hz - bh + 6 + wy * 8,
                       x + bw * (0.4 + 0.45 * wx), hz - bh + 10 + wy * 8)
                if box[3] < hz - 3:
                    d.rectangle(box, fill=(60, 70, 90))
                    if lit[n]:
                        gd.rectangle(box, fill=(230, 190, 110))
        x += bw * float(lay.uniform(1.0, 1.4))


def _road(d: Draw, cam: _View, seq: _Seq, zc: float) -> None:
    """Asphalt, edge lines, lane dashes that stream towards the camera, optional zebra."""
    W, H, at = cam.W, cam.H, cam.at
    asphalt = (60, 64, 78) if seq.weather == "rain" else (88, 88, 92)
    d.polygon([(cam.vx, cam.hz), (W / 2 - 0.62 * W, H), (W / 2 + 0.62 * W, H)], fill=asphalt)
    for u in (-1.0, 1.0):
        d.line([(cam.vx, cam.hz), at(1.0 + cam.v * cam.frame, u)[:2]], fill=(220, 220, 210),
               width=2)
    for j in range(16):
        for u in (-0.33, 0.33) if seq.scene == "highway" else (0.0,):
            z0 = 1.0 + j * 0.75
            if at(z0, 0)[3] < at(z0 + 0.35, 0)[3]:  # skip a dash split by the depth wrap
                d.polygon(cam.quad(z0, 0.35, u - 0.015, 0.03), fill=(235, 225, 150))
    for j in range(10 if seq.crosswalk else 0):
        d.polygon(cam.quad(zc, 0.4, -1.0 + j * 0.2, 0.11), fill=(238, 238, 235))


def _render(seed: int, seq: _Seq, frame: int,
            size: tuple[int, int]) -> tuple[Image.Image, list[SceneObject]]:
    """Draw one frame and say where its objects are; layout comes from a per-sequence stream."""
    W, H = size[0] * _SS, size[1] * _SS
    lay = np.random.default_rng([seed, seq.index, 7])
    noise = np.random.default_rng([seed, seq.index, frame, 11])
    tod, night, edge = seq.time_of_day, seq.time_of_day == "night", seq.edges.get(frame, "")
    v = float(lay.uniform(0.02, 0.05))  # slow forward motion keeps neighbours near-duplicates
    # one fleet camera mount: horizon and heading vary only a little between drives
    hz = H * float(lay.uniform(0.42, 0.46))
    vx = W * float(lay.uniform(0.47, 0.53) + lay.uniform(-0.003, 0.003) * frame)
    cam, edge_start = _View(W, H, hz, vx, v, frame), min(seq.edges, default=0)
    top, bottom = _SKY[tod]
    k = np.clip(np.arange(H) / hz, 0.0, 1.0)[:, None, None]
    arr = np.broadcast_to(np.array(top) * (1 - k) + np.array(bottom) * k, (H, W, 3)).copy()
    side = (150, 145, 140) if seq.scene == "urban" else (85, 125, 65)
    arr[int(hz):] = side
    img = Image.fromarray(arr.astype(np.uint8))
    # three layers: albedo, a light mask (street lamps, headlights) and self-luminous glow
    d, mask, glow = ImageDraw.Draw(img), Image.new("L", (W, H)), Image.new("RGB", (W, H))
    md, gd = ImageDraw.Draw(mask), ImageDraw.Draw(glow)
    objmap = ObjectMap((W, H))  # where each pedestrian and car ends up visible: the ground truth
    # own stream: the skyline loop's draw count varies with the pan and must not shift `lay`
    _skyline(d, gd, np.random.default_rng([seed, seq.index, 8]), cam, seq)
    # edge-case actors stand close to the camera at their first frame: they must dominate the
    # frame, or pixel-level neighbour search would only see the (shared) street around them
    zc = float(lay.uniform(1.9, 2.4)) + v * edge_start
    if EDGE_CASES[0] in seq.edges.values():
        zc = 1.45 + v * edge_start
    _road(d, cam, seq, zc)
    # objects: (depth, kind, lateral u, colour); drawn far to near so near ones occlude
    objs: list[tuple[float, str, float, Color]] = []
    for j in range(6):
        z0 = 1.3 + j * 2.0 + float(lay.uniform(0, 0.6))
        objs.append((z0, "lamp" if seq.scene == "urban" else "tree", 1.25 * (-1) ** (j + 1),
                     (50, 120, 45)))
    for _ in range(int(lay.integers(1, 4))):
        u = float(lay.choice([-0.5, 0.5] if seq.scene != "highway" else [-0.66, 0.0, 0.66]))
        # traffic moves too: same-direction cars creep closer, oncoming ones close in fast
        z0 = float(lay.uniform(2.0, 7.0)) + v * frame * (0.6 if u >= 0 else -0.6)
        objs.append((z0, "car" if u >= 0 else "oncoming", u, _rgb(lay.integers(30, 230, 3))))
    if seq.scene != "highway" and lay.random() < 0.6:
        objs.append((float(lay.uniform(3, 8)), "person", -1.3, (70, 90, 150)))
    # people on the zebra only by day: at night that is exactly the edge case to mine
    if (seq.crosswalk and not night and lay.random() < 0.7) or edge == EDGE_CASES[0]:
        walk = -0.3 + 0.1 * (frame - edge_start) if edge else -0.8 + 0.07 * frame
        objs.append((zc + 0.2, "crossing", walk, (240, 235, 120) if night else (160, 50, 50)))
    if EDGE_CASES[2] in seq.edges.values():
        objs.append((1.3 + v * edge_start, "car", 0.7, (150, 30, 30)))
        if edge:  # slightly farther than the parked car, so its lower half is hidden
            objs.append((1.42 + v * edge_start, "person", 0.62, (235, 120, 30)))
    lights_on = gd if tod != "day" else None
    for z0, kind, u, col in sorted(objs, key=lambda o: -cam.at(o[0], 0)[3]):
        x, y, hw, _ = cam.at(z0, u)
        if kind in ("car", "oncoming"):
            _car(objmap.pen(d, "car"), x, y, 0.42 * hw, col, kind == "oncoming", lights_on)
        elif kind in ("person", "crossing"):
            _person(objmap.pen(d, "pedestrian", on_zebra=kind == "crossing"), x, y, 0.5 * hw, col,
                    1.0 if frame % 4 < 2 else -1.0)
            md.ellipse((x - 0.3 * hw, y - 0.6 * hw, x + 0.3 * hw, y + 0.1 * hw), fill=80)
        elif kind == "tree":
            scenery = objmap.occluder(d)
            scenery.rectangle((x - 0.03 * hw, y - 0.5 * hw, x + 0.03 * hw, y), fill=(90, 65, 40))
            scenery.ellipse((x - 0.22 * hw, y - 0.95 * hw, x + 0.22 * hw, y - 0.4 * hw), fill=col)
        else:
            hx, hy = x - 0.3 * hw * (1 if u > 0 else -1), y - 1.1 * hw
            head = (hx - 0.06 * hw, hy - 0.02 * hw, hx + 0.06 * hw, hy + 0.04 * hw)
            scenery = objmap.occluder(d)
            scenery.line([(x, y), (x, hy), (hx, hy)], fill=(70, 70, 75),
                         width=max(1, round(0.03 * hw)))
            scenery.ellipse(head, fill=(200, 200, 190))
            gd.ellipse(head, fill=(255, 220, 150))
            md.ellipse((hx - 0.6 * hw, y - 0.15 * hw, hx + 0.6 * hw, y + 0.15 * hw), fill=230)
    if edge == EDGE_CASES[1]:
        _reflection(img, md, cam.at(1.7 + v * edge_start, float(lay.uniform(-0.15, 0.15))), objmap)
    if seq.crosswalk and night:  # a lamp right over the zebra makes the night crossing readable
        x, y, hw, _ = cam.at(zc + 0.2, 0.0)
        md.ellipse((x - 1.1 * hw, y - 0.7 * hw, x + 1.1 * hw, y + 0.25 * hw), fill=255)
    # own headlights, so the road right ahead is never pitch black at night
    md.polygon([(W * 0.1, H), (vx - 0.1 * W, hz + 0.25 * (H - hz)),
                (vx + 0.1 * W, hz + 0.25 * (H - hz)), (W * 0.9, H)], fill=150 if night else 60)
    objects = objmap.objects(_SS, size, mirror=seq.sensor == "rear_cam")
    return _expose(img, mask, glow, seq, noise, hz / H, size), objects


def _expose(img: Image.Image, mask: Image.Image, glow: Image.Image, seq: _Seq,
            noise: np.random.Generator, horizon: float, size: tuple[int, int]) -> Image.Image:
    """Apply ambient light, lamps, glow, weather and sensor noise at output resolution."""
    # lighting after downscaling: the mask and halos are blurry anyway, and it is 4x cheaper
    tod, wet = seq.time_of_day, seq.weather == "rain"
    amb = np.array(_AMBIENT[tod], dtype=np.float32) * (0.8 if wet else 1.0)
    m = np.asarray(mask.resize(size, Image.Resampling.BILINEAR).filter(
        ImageFilter.GaussianBlur(6)), dtype=np.float32)[..., None]
    out = np.asarray(img.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    out *= amb + (1.05 - amb) * m / 255.0
    if tod != "day":
        small = glow.resize(size, Image.Resampling.BILINEAR)
        out += np.asarray(small, "f") * 0.8 + 1.6 * np.asarray(
            small.filter(ImageFilter.GaussianBlur(4)), "f")
    if seq.weather == "fog":  # haze is thickest at the horizon, i.e. with distance
        rows = np.abs(np.arange(size[1]) - horizon * size[1]) / (0.3 * size[1])
        f = (0.2 + 0.5 * np.exp(-rows))[:, None, None]
        out = out * (1 - f) + np.array(_FOG[tod], dtype=np.float32) * f
    if wet:  # streaks are per-frame noise, like real rain, but faint enough to stay near-duplicate
        streaks = Image.new("L", size)
        sd = ImageDraw.Draw(streaks)
        for rx, ry in noise.uniform((0, 0), size, (40, 2)):
            sd.line([(rx, ry), (rx - 1.5, ry + 7)], fill=110, width=1)
        a = np.asarray(streaks, dtype=np.float32)[..., None] / 255.0
        out = out * (1 - a) + np.array((190, 195, 210), dtype=np.float32) * a
    # sensor noise differs per frame, so no two frames are byte-identical
    out += noise.standard_normal(out.shape, dtype=np.float32) * 2.5
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if seq.sensor == "rear_cam" else img


def _reflection(img: Image.Image, md: Draw, pos: tuple[float, float, float, float],
                objmap: ObjectMap) -> None:
    """Stand a pedestrian at a puddle that mirrors them, and the street behind, upside-down."""
    x, y, hw, _ = pos
    # the pedestrian is an object; the mirror image is not (a detector should not box it)
    _person(objmap.pen(ImageDraw.Draw(img), "pedestrian"), x, y, 0.62 * hw, (235, 230, 90), 0.5)
    # mirror whatever is above the waterline, so cars behind the pedestrian show up too
    rx, depth = int(0.6 * hw), int(min(0.75 * hw, img.height - y))
    box = (int(x) - rx, int(y) - depth, int(x) + rx, int(y))
    mirrored = img.crop(box).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    puddle = Image.new("L", mirrored.size)
    ImageDraw.Draw(puddle).ellipse((0, -0.15 * depth, 2 * rx, depth), fill=215)
    img.paste(mirrored, (box[0], box[3]), puddle)
    objmap.hide(puddle, (box[0], box[3]))  # the water hides whatever object was drawn there
    md.ellipse((x - 0.8 * hw, y - 0.9 * hw, x + 0.8 * hw, y + 0.8 * hw), fill=255)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file and rename so a crash never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def generate_demo_dataset(root: Path, n_scenes: int = 300, seed: int = 0,
                          image_size: tuple[int, int] = (160, 120)) -> DemoDataset:
    """Write a synthetic drive (images, manifest.csv, ground truth, v7/v8 predictions, scenarios)."""
    if n_scenes < 1:
        raise ValueError("n_scenes must be >= 1")
    root = Path(root)
    images_dir = root / "images"
    rows: list[dict[str, str]] = []
    frames: list[Frame] = []
    for seq in _plan(n_scenes, seed):
        (images_dir / seq.seq_id).mkdir(parents=True, exist_ok=True)
        n_labeled = max(1, round(0.1 * seq.n_frames))
        for frame in range(seq.n_frames):
            image_id = f"{seq.seq_id}/frame_{frame:04d}.jpg"
            buf = io.BytesIO()
            img, objects = _render(seed, seq, frame, image_size)
            img.save(buf, "JPEG", quality=90)
            _write_atomic(images_dir / image_id, buf.getvalue())
            ts = seq.start + timedelta(milliseconds=100 * frame)
            edge = seq.edges.get(frame, "")
            frames.append(Frame(image_id, image_size, seq.time_of_day, seq.weather, seq.crosswalk,
                                edge, tuple(objects)))
            rows.append({
                "image_id": image_id, "path": f"images/{image_id}", "sequence_id": seq.seq_id,
                "frame": str(frame), "timestamp": ts.isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"), "time_of_day": seq.time_of_day, "weather": seq.weather,
                "sensor": seq.sensor, "scene": seq.scene, "edge_case": edge,
                "labeled": "true" if frame < n_labeled and not edge else "false"})
    ids = [r["image_id"] for r in rows]
    # drop frames left over from an earlier, larger run so the manifest matches the disk
    keep = set(ids)
    for old in images_dir.glob("drive_*/frame_*.jpg"):
        if old.relative_to(images_dir).as_posix() not in keep:
            old.unlink()
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    manifest = root / "manifest.csv"
    _write_atomic(manifest, text.getvalue().encode())
    truth = root / TRUTH_FILE
    _write_atomic(truth, truth_jsonl(frames))
    predictions = {m.name: root / prediction_file(m.name) for m in MODELS}
    for m in MODELS:
        _write_atomic(predictions[m.name], predictions_jsonl(m, frames, seed))
    reflections = [f.image_id for f in frames if f.edge_case == EDGE_CASES[1]]
    scenarios = root / "scenarios"
    for old in scenarios.glob("*.yaml"):  # a scenario this scene count no longer has must go
        old.unlink()
    write_scenarios(scenarios, demo_scenarios(frames, reflections))
    return DemoDataset(root, images_dir, manifest, ids,
                       [r["image_id"] for r in rows if r["edge_case"]], truth, predictions, scenarios)
