"""ONNX export of the per-frame tracker network (docs/export.md).

The exported graph is one tracking step of `motrv3.Tracker` without its life cycle:

    inputs   image          [1, 3, H, W]  ImageNet-normalised RGB (H, W dynamic)
             kept_content   [K, D]        previous frame's kept queries (K dynamic, 0 on a first frame):
             kept_boxes     [K, 4]          decoder input content and reference box,
             kept_hidden    [K, D]          last-layer decoder output,
             kept_pred_boxes[K, 4]          last-layer predicted box (sigmoid cx, cy, w, h),
             kept_update    [K]   bool      whether the query interaction updates it (score > keep score)
    outputs  logits         [M+K, C]      last-layer class logits, detect queries then track queries
             boxes          [M+K, 4]      last-layer boxes, sigmoid cx, cy, w, h
             hidden         [M+K, D]      last-layer decoder output
             query_content  [M+K, D]      this frame's decoder input content and reference box:
             query_boxes    [M+K, 4]        the rows a caller keeps are next frame's kept_content/boxes

The query interaction module (QIM, `MOTR.next_tracks`) of the previous frame runs at the start
of the graph on the kept rows, so one graph and one session track a video with no torch model:
the caller selects rows (numpy) and the graph does all arithmetic. Mathematically this is the
same step as the torch tracker's, only the QIM is computed one call later.

Deformable attention exports through its PyTorch formulation (`F.grid_sample`, ONNX GridSample,
opset ≥ 16), with level sizes taken from the feature maps' shapes so the image size stays
dynamic; no custom operator is needed at runtime.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from motrv3.ops import MSDeformAttn
from motrv3.position_encoding import sine_position_encoding

INPUT_NAMES = ("image", "kept_content", "kept_boxes", "kept_hidden", "kept_pred_boxes", "kept_update")
OUTPUT_NAMES = ("logits", "boxes", "hidden", "query_content", "query_boxes")
OPSET = 18  # GridSample needs ≥ 16; 18 is the dynamo exporter's native opset
METADATA_KEY = "motrv3"  # ONNX metadata_props key of the JSON description (config, shapes)
EXPORT_FORMAT = 1


class _LevelShapes:
    """The (h, w) of each level for the frame being traced, shared by every attention module."""

    def __init__(self):
        self.shapes: list[tuple] = []


class ExportMSDeformAttn(nn.Module):
    """`MSDeformAttn` in the grid_sample formulation, with level sizes from traced shapes.

    Shares the wrapped module's projections. Numerically the `pytorch` implementation of
    `motrv3.ops` (Deformable DETR Eq. 3), written without reading tensor values (`.tolist()`,
    `int(...)`), which a dynamic-shape export cannot do.
    """

    def __init__(self, attention: MSDeformAttn, levels: _LevelShapes):
        super().__init__()
        self.attention = attention
        self.levels = levels

    def forward(self, query, reference_points, input_flatten, input_spatial_shapes=None, *_):
        attn = self.attention
        heads, n_levels, n_points = attn.n_heads, attn.n_levels, attn.n_points
        num_queries = query.shape[1]
        value = attn.value_proj(input_flatten)[0]  # [S, D]
        head_dim = attn.d_model // heads
        offsets = attn.sampling_offsets(query).view(1, num_queries, heads, n_levels, n_points, 2)
        weights = attn.attention_weights(query).view(1, num_queries, heads, n_levels * n_points)
        weights = F.softmax(weights, -1).view(1, num_queries, heads, n_levels, n_points)
        shapes = self.levels.shapes
        if reference_points.shape[-1] == 2:
            # Encoder: offsets in pixels of each level, normalised by (w, h).
            one = torch.ones((), device=query.device)
            pixel = torch.stack([torch.stack([one / w, one / h]) for h, w in shapes])  # [L, 2]
            locations = (
                reference_points[:, :, None, :, None, :] + offsets * pixel[None, None, None, :, None, :]
            )
        else:  # decoder: offsets relative to the box, half its size spread over the points
            centre, size = (
                reference_points[:, :, None, :, None, :2],
                reference_points[:, :, None, :, None, 2:],
            )
            locations = centre + offsets * (size * (0.5 / n_points))
        grids = 2 * locations - 1
        samples, start = [], 0
        for level, (h, w) in enumerate(shapes):
            size = h * w
            level_value = value[start : start + size]  # [h·w, D]
            start = start + size
            value_map = level_value.transpose(0, 1).reshape(heads, head_dim, h, w)
            grid = grids[0, :, :, level].transpose(0, 1)  # [H, Lq, P, 2]
            samples.append(
                F.grid_sample(value_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            )  # [H, D/H, Lq, P]
        mixed = weights[0].permute(1, 0, 2, 3).reshape(heads, 1, num_queries, n_levels * n_points)
        output = (torch.stack(samples, dim=-2).flatten(-2) * mixed).sum(-1)  # [H, D/H, Lq]
        output = output.reshape(heads * head_dim, num_queries).transpose(0, 1)[None]
        return attn.output_proj(output)


def _encoder_geometry(shapes, d_model: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Sine encodings and encoder reference points of every level (`transformer._level_geometry`),
    computed from traced sizes."""
    pos, points = [], []
    for h, w in shapes:
        pos.append(sine_position_encoding(h, w, d_model, device).flatten(1).t())
        ys = (torch.arange(h, device=device).float() + 0.5) / h
        xs = (torch.arange(w, device=device).float() + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1))
    reference = torch.cat(points)[None, :, None, :].expand(1, -1, len(shapes), 2)
    return torch.cat(pos), reference


class FrameGraph(nn.Module):
    """The exported computation (module docstring): QIM of the kept queries, then one MOTR frame."""

    def __init__(self, model):
        super().__init__()
        model = copy.deepcopy(model).eval()
        model.requires_grad_(False)
        self.levels = _LevelShapes()
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, MSDeformAttn):
                    setattr(parent, name, ExportMSDeformAttn(child, self.levels))
        self.model = model
        self.eval()

    def forward(self, image, kept_content, kept_boxes, kept_hidden, kept_pred_boxes, kept_update):
        model = self.model
        transformer = model.transformer
        # The torch module as is: its empty-input shortcut is a guard the graph drops, and on
        # K = 0 every op of the graph sees an empty tensor.
        track_content, track_boxes = model.track_embed(
            kept_content, kept_boxes, kept_hidden, kept_pred_boxes, kept_update
        )
        content = torch.cat([model.query_embed.weight, track_content])
        reference = torch.cat([model.position.weight, track_boxes])
        srcs = model.multiscale_features(image)
        self.levels.shapes = [(s.shape[-2], s.shape[-1]) for s in srcs]
        pos, encoder_reference = _encoder_geometry(self.levels.shapes, model.d_model, image.device)
        level_pos = torch.cat(
            [
                transformer.level_embed[level][None].expand(s.shape[-2] * s.shape[-1], -1)
                for level, s in enumerate(srcs)
            ]
        )
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        # The attention modules read level sizes from self.levels; these stand-ins carry the count.
        spatial_shapes = torch.zeros(len(srcs), 2, dtype=torch.long)
        start = torch.zeros(len(srcs), dtype=torch.long)
        memory = transformer.encoder(src, (pos + level_pos)[None], encoder_reference, spatial_shapes, start)
        hidden, boxes = transformer.decoder(
            content[None],
            reference[None],
            memory,
            spatial_shapes,
            start,
            model.bbox_embed,
            model.model_cfg.box_refine,
            None,
        )
        last_hidden = hidden[-1, 0]
        logits = model.class_embed[-1](last_hidden)
        return logits, boxes[-1, 0], last_hidden, content, reference


def _literal_zero_reshapes(proto) -> int:
    """Give every Reshape torch's meaning of a 0 in the target shape: a dimension of size 0.

    ONNX Reshape reads 0 as "copy the input's dimension" unless `allowzero=1`; with no kept
    queries (K = 0, a video's first frame) the traced shapes hold a real 0 and would be misread.
    A constant target shape with a 0 (a deliberate copy) keeps the ONNX meaning. Returns the count.
    """
    from onnx import helper, numpy_helper

    constants = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    changed = 0
    for node in proto.graph.node:
        if node.op_type != "Reshape":
            continue
        shape = constants.get(node.input[1])
        if shape is not None and (shape == 0).any():
            continue
        attributes = [a for a in node.attribute if a.name != "allowzero"]
        del node.attribute[:]
        node.attribute.extend([*attributes, helper.make_attribute("allowzero", 1)])
        changed += 1
    return changed


def example_inputs(model, height: int = 96, width: int = 160, num_kept: int = 3, seed: int = 0):
    """Inputs of the graph for a `height`×`width` frame and `num_kept` kept queries (tracing, tests)."""
    generator = torch.Generator().manual_seed(seed)
    d_model = model.d_model
    boxes = torch.rand(num_kept, 4, generator=generator) * 0.3 + torch.tensor([0.35, 0.35, 0.05, 0.05])
    return (
        torch.randn(1, 3, height, width, generator=generator),
        torch.randn(num_kept, d_model, generator=generator),
        boxes,
        torch.randn(num_kept, d_model, generator=generator),
        (boxes + 0.01 * torch.randn(num_kept, 4, generator=generator)).clamp(0.01, 0.99),
        torch.arange(num_kept) % 2 == 0,
    )


EXPORTERS = ("torchscript", "dynamo")
VERIFY_TOLERANCE = 1e-3  # largest |ORT − torch| allowed on the traced frame (boxes, logits)


def export_onnx(
    model,
    path: str | Path,
    config: dict | None = None,
    example_size: tuple[int, int] = (128, 224),
    opset: int = OPSET,
    exporter: str = "torchscript",
    verify: bool = True,
) -> Path:
    """Write the per-frame graph of `model` (a `motrv3.MOTR`) to `path`, one self-contained .onnx file.

    `config`: the checkpoint's config dict (sections "model", "tracking", "data", ...), stored
    in the file's metadata so that a tracker built on the file gets the checkpoint's tracking
    settings and test size. `example_size` (h, w) is the frame traced; any size runs (each side
    ≥ 64 pixels, so that the stride-64 level exists). `exporter`: "torchscript" (the tracer,
    seconds) or "dynamo" (`torch.export`, minutes on CPU); both give the same graph semantics.
    `verify`: run the file with onnxruntime on the traced frame, with and without kept queries,
    and raise if it departs from torch by more than VERIFY_TOLERANCE.
    Written atomically (temporary file, then rename).
    """
    import onnx

    if exporter not in EXPORTERS:
        raise ValueError(f"export_onnx: exporter={exporter!r}; expected one of {EXPORTERS}")
    if opset < 16:
        raise ValueError(f"export_onnx: opset={opset}; GridSample needs ≥ 16")
    if getattr(model, "inference_only", False):
        raise ValueError("export_onnx: pass the trained model, not its optimize_for_inference copy")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = FrameGraph(model)
    height, width = example_size
    inputs = example_inputs(graph.model, height, width)
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns on every Python-side shape test; the graph is checked by `verify`.
        warnings.simplefilter("ignore")
        proto = (
            _export_torchscript(graph, inputs, opset)
            if exporter == "torchscript"
            else _export_dynamo(graph, inputs, opset)
        )
    _literal_zero_reshapes(proto)
    description = {
        "format": EXPORT_FORMAT,
        "num_queries": model.num_queries,
        "num_classes": model.num_classes,
        "d_model": model.d_model,
        "opset": opset,
        "exporter": exporter,
        "config": config if config is not None else {},
    }
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(description)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        onnx.save_model(proto, str(tmp))
        if verify:
            verify_export(graph, tmp, example_size)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


_DYNAMIC_AXES = {
    "image": {2: "height", 3: "width"},
    **{name: {0: "kept"} for name in INPUT_NAMES[1:]},
    **{name: {0: "queries"} for name in OUTPUT_NAMES},
}


def _export_torchscript(graph: FrameGraph, inputs: tuple, opset: int):
    import io

    import onnx

    buffer = io.BytesIO()
    torch.onnx.export(
        graph,
        inputs,
        buffer,
        dynamo=False,
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        dynamic_axes=_DYNAMIC_AXES,
        opset_version=opset,
    )
    return onnx.load_from_string(buffer.getvalue())


def _export_dynamo(graph: FrameGraph, inputs: tuple, opset: int):
    dynamic = torch.export.Dim.DYNAMIC
    dynamic_shapes = {
        name: dict.fromkeys(axes, dynamic) for name, axes in _DYNAMIC_AXES.items() if name in INPUT_NAMES
    }
    program = torch.onnx.export(
        graph,
        inputs,
        None,
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        opset_version=opset,
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        external_data=False,
        verbose=False,
    )
    return program.model_proto


def verify_export(graph: FrameGraph, path: str | Path, example_size: tuple[int, int]) -> float:
    """Largest |onnxruntime − torch| over every output, on the traced size with 3 kept queries and
    on a different size with none; raises RuntimeError above VERIFY_TOLERANCE."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    height, width = example_size
    worst = 0.0
    for size, kept in (((height, width), 3), ((height + 32, width - 32), 0)):
        inputs = example_inputs(graph.model, *size, num_kept=kept, seed=1)
        with torch.no_grad():
            expected = graph(*inputs)
        got = session.run(
            list(OUTPUT_NAMES), {n: x.numpy() for n, x in zip(INPUT_NAMES, inputs, strict=True)}
        )
        for name, e, g in zip(OUTPUT_NAMES, expected, got, strict=True):
            if tuple(e.shape) != g.shape:
                raise RuntimeError(
                    f"export {path}: output {name} has shape {g.shape}, torch {tuple(e.shape)}"
                )
            worst = max(worst, float(abs(e.numpy() - g).max()) if g.size else 0.0)
    if worst > VERIFY_TOLERANCE:
        raise RuntimeError(
            f"export {path}: onnxruntime departs from torch by {worst:.3g} > {VERIFY_TOLERANCE}"
        )
    return worst
