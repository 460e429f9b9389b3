"""The embedded synthetic benchmark: DanceTrack-like sequences written in the MOTChallenge layout.

Many look-alike figures (body + head, one colour per sequence with a small `appearance_jitter`)
move non-linearly (wandering headings, speed changes, a dancing sway), cross each other (some are
steered towards a partner), hide each other by depth order (visibility = visible share of the
figure's pixels, border truncation included), enter and leave. Each sequence has its own static
textured background. Public detections (`det/det.txt`) are the ground truth jittered, with misses
and false positives. Everything follows from `synthetic.seed`: two runs give identical bytes.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.formats.motchallenge import format_number
from pipeline.paths import atomic_path

SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}


@dataclass
class Figure:
    """One target's motion state."""

    track_id: int
    height: float
    aspect: float
    colour: np.ndarray  # BGR float
    x: float  # centre
    y: float
    heading: float
    turn: float
    speed: float
    speed_freq: float
    speed_phase: float
    sway_amp: float
    sway_freq: float
    sway_phase: float
    start: int  # first frame (0-based) it exists
    exit_at: int | None  # frame from which it heads out of the image
    partner: int | None = None
    meet_at: int = 0
    gone: bool = False


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A muted, camera-free texture: value noise over oriented stripes, tinted per sequence."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(0.05, 0.25) * height
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
    noise = np.zeros((height, width), np.float32)
    for cells, weight in ((4, 0.6), (12, 0.3), (40, 0.1)):
        grid = rng.random((cells * height // width + 2, cells + 2)).astype(np.float32)
        noise += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    mix = rng.uniform(0.2, 0.7)
    texture = np.clip(mix * stripes + (1 - mix) * noise, 0, 1)
    tint = rng.uniform(0.4, 1.0, size=3).astype(np.float32)
    # Dark and desaturated (≤ ~115), so the bright figures keep a strong contrast.
    image = 25 + 90 * texture[..., None] * tint[None, None, :]
    return image.astype(np.uint8)


def _figure_colour(rng: np.random.Generator) -> np.ndarray:
    hue = rng.uniform(0, 180)
    hsv = np.uint8([[[hue, 170, 235]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _spawn(rng, track_id, cfg, width, height, base_colour, start, from_border):
    size = rng.uniform(*cfg.object_size) * height
    aspect = cfg.aspect * rng.uniform(0.9, 1.1)
    colour = np.clip(base_colour + rng.normal(0, cfg.appearance_jitter * 255, 3), 0, 255)
    if from_border:
        side = rng.integers(4)
        margin = 0.45 * size
        if side == 0:
            x, y, heading = -margin * aspect, rng.uniform(0.3, 0.8) * height, rng.uniform(-0.5, 0.5)
        elif side == 1:
            x, y, heading = (
                width + margin * aspect,
                rng.uniform(0.3, 0.8) * height,
                math.pi + rng.uniform(-0.5, 0.5),
            )
        elif side == 2:
            x, y, heading = rng.uniform(0.2, 0.8) * width, -margin, math.pi / 2 + rng.uniform(-0.5, 0.5)
        else:
            x, y, heading = (
                rng.uniform(0.2, 0.8) * width,
                height + margin,
                -math.pi / 2 + rng.uniform(-0.5, 0.5),
            )
    else:
        x = rng.uniform(0.1, 0.9) * width
        y = rng.uniform(0.15, 0.85) * height
        heading = rng.uniform(-math.pi, math.pi)
    return Figure(
        track_id=track_id,
        height=size,
        aspect=aspect,
        colour=colour,
        x=x,
        y=y,
        heading=heading,
        turn=0.0,
        speed=cfg.speed * height * rng.uniform(0.6, 1.4),
        speed_freq=rng.uniform(0.02, 0.08),
        speed_phase=rng.uniform(0, 2 * math.pi),
        sway_amp=cfg.sway * size * rng.uniform(0.5, 1.5),
        sway_freq=rng.uniform(0.05, 0.15),
        sway_phase=rng.uniform(0, 2 * math.pi),
        start=start,
        exit_at=None,
    )


def _shape(fig: Figure, t: int, cx: float, cy: float):
    """Body ellipse, head circle and two swinging arms of a figure centred at (cx, cy)."""
    h = fig.height * (1 + 0.05 * math.sin(0.3 * t + fig.sway_phase))  # breathing: box sizes vary
    w = h * fig.aspect
    top = cy - h / 2
    head_r = 0.13 * h
    head = (cx, top + head_r)
    body_center = (cx, top + 2 * head_r + (h - 2 * head_r) / 2)
    body_axes = (w * 0.36, (h - 2 * head_r) / 2)
    swing = math.sin(0.4 * t + fig.sway_phase)
    shoulder_y = top + 2.6 * head_r
    arms = [
        ((cx - 0.25 * w, shoulder_y), (cx - 0.5 * w, shoulder_y + (0.15 + 0.15 * swing) * h)),
        ((cx + 0.25 * w, shoulder_y), (cx + 0.5 * w, shoulder_y + (0.15 - 0.15 * swing) * h)),
    ]
    box = (cx - w / 2, top, w, h)
    return box, head, head_r, body_center, body_axes, arms


def _draw(canvas, fig_shape, colour, thickness_scale, shift=4):
    """Draw (sub-pixel, `shift` fractional bits) the figure on `canvas` with `colour`."""
    _, head, head_r, body_center, body_axes, arms = fig_shape
    scale = 1 << shift

    def pt(p):
        return (int(round(p[0] * scale)), int(round(p[1] * scale)))

    arm_width = max(1, int(round(thickness_scale)))
    for a, b in arms:
        cv2.line(canvas, pt(a), pt(b), colour, arm_width, cv2.LINE_8, shift)
    cv2.ellipse(canvas, pt(body_center), pt(body_axes), 0, 0, 360, colour, -1, cv2.LINE_8, shift)
    cv2.circle(canvas, pt(head), int(round(head_r * scale)), colour, -1, cv2.LINE_8, shift)


def simulate_sequence(cfg, rng: np.random.Generator, width: int, height: int):
    """Render one sequence: returns (frames BGR uint8, gt rows, det rows)."""
    num = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    base_colour = _figure_colour(rng)
    frames_total = cfg.frames
    p_event = min(0.5, cfg.entry_exit_rate * frames_total)
    figures: list[Figure] = []
    for index in range(num):
        late = index > 0 and rng.random() < p_event
        start = int(rng.integers(1, max(2, frames_total // 2))) if late else 0
        fig = _spawn(rng, index + 1, cfg, width, height, base_colour, start, from_border=late)
        if rng.random() < p_event:
            fig.exit_at = int(rng.integers(max(start + 10, frames_total // 2), frames_total + 10))
        figures.append(fig)
    for fig in figures:  # crossings: steer some targets towards a partner
        if num > 1 and rng.random() < cfg.occlusion_rate:
            others = [f.track_id for f in figures if f.track_id != fig.track_id]
            fig.partner = int(rng.choice(others))
            fig.meet_at = int(
                rng.integers(frames_total // 4, max(frames_total // 4 + 1, 3 * frames_total // 4))
            )
    bg = background(rng, width, height)
    by_id = {f.track_id: f for f in figures}
    frames, gt_rows, det_rows = [], [], []
    for t in range(frames_total):
        active = [f for f in figures if f.start <= t and not f.gone]
        for fig in active:
            if t > fig.start:
                _step(fig, t, by_id, cfg, width, height, rng)
        shapes = {}
        for fig in active:
            off = fig.sway_amp * math.sin(2 * math.pi * fig.sway_freq * t + fig.sway_phase)
            cx = fig.x + off * -math.sin(fig.heading)
            cy = fig.y + off * 0.3 * math.cos(fig.heading)
            shapes[fig.track_id] = _shape(fig, t, cx, cy)
        # Depth order: a lower box bottom is nearer the camera and drawn later (on top).
        order = sorted(
            active, key=lambda f: (shapes[f.track_id][0][1] + shapes[f.track_id][0][3], f.track_id)
        )
        image = bg.copy()
        labels = np.zeros((height, width), np.uint8)
        for rank, fig in enumerate(order, start=1):
            shape = shapes[fig.track_id]
            outline = tuple(float(c) * 0.25 for c in fig.colour)
            _draw(image, shape, outline, 0.16 * fig.height * fig.aspect + 2)
            _draw(image, shape, tuple(float(c) for c in fig.colour), 0.16 * fig.height * fig.aspect)
            _draw(labels, shape, rank, 0.16 * fig.height * fig.aspect + 2)
        for rank, fig in enumerate(order, start=1):
            box = shapes[fig.track_id][0]
            x, y, w, h = (round(v, 2) for v in box)
            if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
                if fig.exit_at is not None and t >= fig.exit_at:
                    fig.gone = True
                continue
            full = _full_area(shapes[fig.track_id], fig)
            visible = int(np.count_nonzero(labels == rank))
            visibility = round(min(1.0, visible / max(full, 1)), 2)
            gt_rows.append((t + 1, fig.track_id, x, y, w, h, 1, 1, visibility))
        frames.append(image)
    det_rows = public_detections(gt_rows, cfg, rng, width, height)
    return frames, gt_rows, det_rows


def _full_area(shape, fig: Figure) -> int:
    """Pixel count of the figure drawn alone, unclipped (visibility counts border truncation too)."""
    x, y, w, h = shape[0]
    pad = 4 + int(0.2 * fig.height)
    patch = np.zeros((int(h) + 2 * pad, int(w) + 2 * pad), np.uint8)
    dx, dy = pad - x, pad - y
    moved = (
        shape[0],
        (shape[1][0] + dx, shape[1][1] + dy),
        shape[2],
        (shape[3][0] + dx, shape[3][1] + dy),
        shape[4],
        [((a[0] + dx, a[1] + dy), (b[0] + dx, b[1] + dy)) for a, b in shape[5]],
    )
    _draw(patch, moved, 1, 0.16 * fig.height * fig.aspect + 2)
    return int(np.count_nonzero(patch))


def _step(fig: Figure, t: int, by_id: dict[int, Figure], cfg, width: int, height: int, rng) -> None:
    """Advance one frame: wandering heading, speed changes, partner steering, borders."""
    fig.turn = float(np.clip(fig.turn + rng.normal(0, cfg.turn_rate / 3), -cfg.turn_rate, cfg.turn_rate))
    fig.heading += fig.turn
    partner = by_id.get(fig.partner) if fig.partner is not None else None
    if partner is not None and t < fig.meet_at and partner.start <= t and not partner.gone:
        target = math.atan2(partner.y - fig.y, partner.x - fig.x)
        fig.heading += 0.3 * math.atan2(math.sin(target - fig.heading), math.cos(target - fig.heading))
    exiting = fig.exit_at is not None and t >= fig.exit_at
    if exiting:  # head for the nearest side and keep going
        dists = [fig.x, width - fig.x, fig.y, height - fig.y]
        target = [math.pi, 0.0, -math.pi / 2, math.pi / 2][int(np.argmin(dists))]
        fig.heading += 0.2 * math.atan2(math.sin(target - fig.heading), math.cos(target - fig.heading))
    speed = fig.speed * (1 + 0.6 * math.sin(2 * math.pi * fig.speed_freq * t + fig.speed_phase))
    fig.x += speed * math.cos(fig.heading)
    fig.y += speed * math.sin(fig.heading)
    entering = t < fig.start + 15
    if not exiting and not entering:  # bounce off the borders (stay fully inside)
        half_w, half_h = fig.height * fig.aspect / 2, fig.height / 2
        if fig.x < half_w or fig.x > width - half_w:
            fig.heading = math.pi - fig.heading
            fig.x = float(np.clip(fig.x, half_w, width - half_w))
        if fig.y < half_h or fig.y > height - half_h:
            fig.heading = -fig.heading
            fig.y = float(np.clip(fig.y, half_h, height - half_h))


def public_detections(gt_rows, cfg, rng, width: int, height: int):
    """det.txt rows: visible targets jittered (some missed), plus scored false positives."""
    rows = []
    by_frame: dict[int, list] = {}
    for row in gt_rows:
        by_frame.setdefault(row[0], []).append(row)
    for frame in range(1, cfg.frames + 1):
        for _, _, x, y, w, h, _, _, vis in by_frame.get(frame, []):
            if rng.random() > (1 - cfg.det_miss_rate) * min(1.0, 1.5 * vis):
                continue
            j = cfg.det_jitter
            cx = x + w / 2 + rng.normal(0, j * w)
            cy = y + h / 2 + rng.normal(0, j * h)
            dw, dh = w * math.exp(rng.normal(0, j)), h * math.exp(rng.normal(0, j))
            score = float(np.clip(0.55 + 0.45 * vis - abs(rng.normal(0, 0.1)), 0.05, 1.0))
            rows.append((frame, cx - dw / 2, cy - dh / 2, dw, dh, score))
        for _ in range(rng.poisson(cfg.det_false_positives)):
            dh = rng.uniform(*cfg.object_size) * height
            dw = dh * cfg.aspect
            rows.append(
                (
                    frame,
                    rng.uniform(0, width - dw),
                    rng.uniform(0, height - dh),
                    dw,
                    dh,
                    rng.uniform(0.05, 0.6),
                )
            )
    kept = []
    for frame, x, y, w, h, score in rows:
        x, y, w, h = round(x, 2), round(y, 2), round(w, 2), round(h, 2)
        if w > 0 and h > 0 and x + w > 0 and y + h > 0 and x < width and y < height:
            kept.append((frame, x, y, w, h, round(score, 3)))
    return kept


def write_sequence(
    seq_dir: Path, name: str, frames, gt_rows, det_rows, frame_rate: int, quality: int
) -> None:
    """One MOTChallenge sequence folder, written atomically (a killed run leaves no half sequence)."""
    with atomic_path(seq_dir) as tmp:
        (tmp / "img1").mkdir(parents=True)
        (tmp / "gt").mkdir()
        (tmp / "det").mkdir()
        height, width = frames[0].shape[:2]
        (tmp / "seqinfo.ini").write_text(
            "[Sequence]\n"
            f"name={name}\nimDir=img1\nframeRate={frame_rate}\nseqLength={len(frames)}\n"
            f"imWidth={width}\nimHeight={height}\nimExt=.jpg\n"
        )
        for index, image in enumerate(frames, start=1):
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok
            (tmp / "img1" / f"{index:06d}.jpg").write_bytes(data.tobytes())
        (tmp / "gt" / "gt.txt").write_text(
            "".join(",".join(format_number(v) for v in row) + "\n" for row in gt_rows)
        )
        (tmp / "det" / "det.txt").write_text(
            "".join(f"{r[0]},-1,{','.join(format_number(v) for v in r[1:])},-1,-1,-1\n" for r in det_rows)
        )


def sequence_names(cfg) -> dict[str, list[str]]:
    return {
        split: [f"syn-{split}-{i:02d}" for i in range(1, count + 1)] for split, count in cfg.sequences.items()
    }


def generate(cfg, out_dir: str | Path, progress: bool = True) -> dict[str, list[str]]:
    """Write every split of the synthetic benchmark under `out_dir/<split>/<sequence>/`.

    Sequence i of a split depends only on (seed, split, i); folders of sequences no longer in the
    params are removed so the output matches the params exactly.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    names = sequence_names(cfg)
    jobs = [
        (split, i, name)
        for split, split_names in names.items()
        for i, name in enumerate(split_names, start=1)
    ]
    for split, split_names in names.items():
        split_dir = out_dir / split
        if split_dir.is_dir():
            for stale in split_dir.iterdir():
                if stale.name not in split_names:
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    for split in list(out_dir.iterdir()) if out_dir.is_dir() else []:
        if split.name not in names:
            shutil.rmtree(split) if split.is_dir() else split.unlink()
    for split, index, name in tqdm(jobs, desc="generate", unit="seq", disable=not progress):
        split_key = SPLIT_SEEDS.get(split, sum(map(ord, split)))
        rng = np.random.default_rng([cfg.seed, split_key, index])
        frames, gt_rows, det_rows = simulate_sequence(cfg, rng, cfg.width, cfg.height)
        write_sequence(
            out_dir / split / name, name, frames, gt_rows, det_rows, cfg.frame_rate, cfg.jpeg_quality
        )
    return names
