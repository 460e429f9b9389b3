"""The per-frame network run by onnxruntime, for `motrv3.Tracker` (docs/export.md).

`OnnxFrameNetwork` offers the three calls the tracker makes of a `MOTR` (`empty_tracks`,
`forward_frame`, `next_tracks`), so the same life-cycle code tracks with either. The graph
(`motrv3.export`) does all the arithmetic, the query interaction of the kept queries included;
this side only selects rows with numpy. torch is used for nothing but wrapping outputs as tensors
(zero-copy) for the shared life-cycle code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from motrv3.export import EXPORT_FORMAT, INPUT_NAMES, METADATA_KEY, OUTPUT_NAMES
from motrv3.structures import FrameOutput


@dataclass
class OnnxTrackState:
    """The K kept queries between two frames: the life-cycle fields of `TrackState`, and what the
    graph's query interaction needs (numpy rows of the frame they were kept from)."""

    ids: torch.Tensor  # [K] long
    scores: torch.Tensor  # [K] last score
    misses: torch.Tensor  # [K] long
    content: np.ndarray  # [K, D] decoder input content
    boxes: np.ndarray  # [K, 4] reference boxes
    hidden: np.ndarray  # [K, D] last-layer decoder output
    pred_boxes: np.ndarray  # [K, 4] last-layer boxes
    update: np.ndarray  # [K] bool: score above the keep score, the QIM updates the query

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class OnnxFrameOutput(FrameOutput):
    """`FrameOutput` (last layer only, L = 1) plus the decoder inputs the kept rows carry on."""

    query_content: np.ndarray | None = None  # [M+K, D]
    query_boxes: np.ndarray | None = None  # [M+K, 4]


def onnx_providers(device: str = "auto") -> list[str]:
    """onnxruntime execution providers for `device`: "auto" → CUDA then CPU when this onnxruntime
    has the CUDA provider (`onnxruntime-gpu`), else CPU; "cpu" → CPU; "cuda[:N]" → CUDA (an error
    when it is not available)."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda") and not has_cuda:
        raise RuntimeError(
            f"device {device!r}: this onnxruntime has no CUDAExecutionProvider (providers: "
            f"{', '.join(available)}); install onnxruntime-gpu"
        )
    if device != "auto" and not device.startswith("cuda"):
        raise ValueError(f"device {device!r}: expected auto, cpu or cuda[:N]")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if has_cuda else ["CPUExecutionProvider"]


class OnnxFrameNetwork:
    """An exported .onnx file behind the `MOTR` calls of `motrv3.Tracker`.

    `threads`: onnxruntime intra-op threads (None: its default, every core). `providers`: the
    session's execution providers (default: CPU); `provider` is the one that runs, onnxruntime
    falling back to CPU when a requested provider cannot load (e.g. no CUDA driver).
    """

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None):
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} does not exist")
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self.path), options, providers=providers or ["CPUExecutionProvider"]
        )
        self.provider: str = self.session.get_providers()[0]
        metadata = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in metadata:
            raise ValueError(
                f"{self.path}: not a motrv3 export (no {METADATA_KEY!r} metadata; write it with `motrv3 export`)"
            )
        description = json.loads(metadata[METADATA_KEY])
        if description.get("format") != EXPORT_FORMAT:
            raise ValueError(
                f"{self.path}: export format {description.get('format')!r}, this version reads {EXPORT_FORMAT}"
            )
        names = tuple(i.name for i in self.session.get_inputs())
        if names != INPUT_NAMES:
            raise ValueError(f"{self.path}: graph inputs {names}, expected {INPUT_NAMES}")
        self.num_queries = int(description["num_queries"])
        self.d_model = int(description["d_model"])
        self.config: dict = description.get("config") or {}

    def empty_tracks(self) -> OnnxTrackState:
        d = self.d_model
        return OnnxTrackState(
            ids=torch.zeros(0, dtype=torch.long),
            scores=torch.zeros(0),
            misses=torch.zeros(0, dtype=torch.long),
            content=np.zeros((0, d), np.float32),
            boxes=np.zeros((0, 4), np.float32),
            hidden=np.zeros((0, d), np.float32),
            pred_boxes=np.zeros((0, 4), np.float32),
            update=np.zeros(0, bool),
        )

    def forward_frame(self, image, tracks: OnnxTrackState | None = None) -> OnnxFrameOutput:
        """image [1, 3, H, W] normalised (tensor or array); tracks from `next_tracks` (None: none)."""
        tracks = tracks if tracks is not None else self.empty_tracks()
        pixels = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        feeds = dict(
            zip(
                INPUT_NAMES,
                (
                    np.ascontiguousarray(pixels, dtype=np.float32),
                    tracks.content,
                    tracks.boxes,
                    tracks.hidden,
                    tracks.pred_boxes,
                    tracks.update,
                ),
                strict=True,
            )
        )
        logits, boxes, hidden, query_content, query_boxes = self.session.run(list(OUTPUT_NAMES), feeds)
        return OnnxFrameOutput(
            logits=torch.from_numpy(logits)[None],
            boxes=torch.from_numpy(boxes)[None],
            hidden=torch.from_numpy(hidden),
            num_det=self.num_queries,
            num_track=len(tracks),
            query_content=query_content,
            query_boxes=query_boxes,
        )

    def next_tracks(
        self,
        out: OnnxFrameOutput,
        tracks: OnnxTrackState | None,
        index: torch.Tensor,
        ids: torch.Tensor,
        misses: torch.Tensor | None = None,
        update_threshold: float | None = None,
    ) -> OnnxTrackState:
        """`MOTR.next_tracks`: the rows at `index` go on; their query interaction runs in the next
        `forward_frame` (inside the graph)."""
        rows = index.cpu().numpy()
        scores = out.logits[-1, : out.num_original].sigmoid().max(-1).values[index]
        update = np.ones(len(rows), bool) if update_threshold is None else (scores > update_threshold).numpy()
        return OnnxTrackState(
            ids=ids,
            scores=scores,
            misses=torch.zeros_like(ids) if misses is None else misses,
            content=out.query_content[rows],
            boxes=out.query_boxes[rows],
            hidden=out.hidden.numpy()[rows],
            pred_boxes=out.boxes[-1].numpy()[rows],
            update=update,
        )


def load_onnx(
    path: str | Path, threads: int | None = None, device: str = "cpu"
) -> tuple[OnnxFrameNetwork, dict]:
    """(network, config) of an exported file: the counterpart of `motrv3.load_checkpoint`.

    `device`: "cpu" (default), "auto" (CUDA when onnxruntime has it) or "cuda" (`onnx_providers`)."""
    network = OnnxFrameNetwork(path, threads=threads, providers=onnx_providers(device))
    return network, network.config
