"""Tiny MOTChallenge/CrowdHuman trees for the data tests (64×48 images, a few frames). No tests here."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 64, 48
GT_ROWS = [  # frame, id, x, y, w, h, consider, class, visibility
    (1, 1, 5, 6, 10, 20, 1, 1, 1),
    (1, 2, 30.5, 10, 12, 24, 1, 1, 0.5),
    (2, 1, 6, 6, 10, 20, 1, 1, 1),
    (2, 2, -4, 10, 12, 24, 1, 1, 0.75),  # partly outside: valid
    (3, 1, 7, 7, 10, 20, 1, 1, 1),
    (4, 1, 8, 8, 10, 20, 1, 1, 1),
]


def jpeg(seed: int, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def rows_text(rows) -> str:
    return "".join(",".join(str(v) for v in row) + "\n" for row in rows)


def write_sequence(
    seq_dir: Path,
    frames: int = 4,
    gt_rows=GT_ROWS,
    det_rows=None,
    seqinfo: dict | None = None,
    seed: int = 0,
) -> Path:
    """A MOTChallenge sequence folder; `seqinfo` overrides keys (value None removes the key)."""
    (seq_dir / "img1").mkdir(parents=True)
    for index in range(1, frames + 1):
        (seq_dir / "img1" / f"{index:06d}.jpg").write_bytes(jpeg(seed * 100 + index))
    info = {
        "name": seq_dir.name,
        "imDir": "img1",
        "frameRate": 10,
        "seqLength": frames,
        "imWidth": WIDTH,
        "imHeight": HEIGHT,
        "imExt": ".jpg",
    }
    info.update(seqinfo or {})
    (seq_dir / "seqinfo.ini").write_text(
        "[Sequence]\n" + "".join(f"{k}={v}\n" for k, v in info.items() if v is not None)
    )
    if gt_rows is not None:
        (seq_dir / "gt").mkdir()
        (seq_dir / "gt" / "gt.txt").write_text(gt_rows if isinstance(gt_rows, str) else rows_text(gt_rows))
    if det_rows is not None:
        (seq_dir / "det").mkdir()
        (seq_dir / "det" / "det.txt").write_text(rows_text(det_rows))
    return seq_dir


def write_crowdhuman(root: Path, split: str = "train") -> Path:
    (root / "Images").mkdir(parents=True, exist_ok=True)
    entries = [
        {
            "ID": "img_b",
            "gtboxes": [
                {"tag": "person", "fbox": [2, 3, 10, 20], "vbox": [2, 3, 10, 10], "extra": {"box_id": 0}},
                {"tag": "person", "fbox": [30, 5, 12, 30], "extra": {"box_id": 1, "ignore": 1}},
                {"tag": "mask", "fbox": [40, 5, 10, 10], "extra": {"box_id": 2, "ignore": 1}},
            ],
        },
        {"ID": "img_a", "gtboxes": [{"tag": "person", "fbox": [-5, 0, 20, 40], "extra": {}}]},
    ]
    for i, entry in enumerate(entries):
        (root / "Images" / f"{entry['ID']}.jpg").write_bytes(
            jpeg(500 + i, 80 if i == 0 else 64, 60 if i == 0 else 48)
        )
    (root / f"annotation_{split}.odgt").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return root
