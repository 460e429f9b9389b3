"""Property-based tests of every reader of outside input (issue 23): arbitrary bytes and mutated
valid files either parse completely or raise the project's `DataError` naming the file; never
another exception, never a silent partial result (every non-blank line is a row or an error).

Deterministic and bounded: `derandomize=True`, no example database, a fixed `max_examples` per
reader (the whole file runs in well under a minute on two cores).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.data.crowdhuman import read_crowdhuman
from pipeline.data.images import decode_image, image_size
from pipeline.data.reader import FrameIndex
from pipeline.formats import motchallenge as mot
from pipeline.formats.detections import read_det_txt, read_json_db
from pipeline.formats.errors import DataError, Issues
from tests.test_data_helpers import jpeg, write_crowdhuman

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Values a mutation splices in: separators, edge numbers, encodings, JSON syntax.
TOKENS = [
    b",",
    b"\n",
    b"\r",
    b"\r\n",
    b" ",
    b"\t",
    b"=",
    b"-",
    b".",
    b"0",
    b"-1",
    b"1e309",
    b"-1e309",
    b"nan",
    b"inf",
    b"NaN",
    b"Infinity",
    b"1_0",
    b"0x1",
    b"\x00",
    b"\xff",
    b"\xef\xbb\xbf",
    "\u0661".encode(),
    "\u00b2".encode(),
    b"9" * 40,
    b"[",
    b"]",
    b"{",
    b"}",
    b'"',
    b":",
    b"\\",
    b"null",
    b"true",
    b"[Sequence]",
    b"seqLength=",
    b"imWidth=",
    b"imDir=",
    b"imExt=",
]


@st.composite
def mutated(draw, valid: bytes, max_ops: int = 4) -> bytes:
    """`valid` with 1..max_ops edits: a byte replaced, a token or random bytes inserted, a span
    deleted or duplicated, the file truncated."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["replace", "insert", "token", "delete", "duplicate", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "replace" and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 40))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


def inputs(valid: bytes) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, text made of the format's own characters, and mutations of a valid file."""
    row_text = st.text(alphabet="0123456789,.-+ e\nnaif\r\t", max_size=120).map(str.encode)
    return st.one_of(st.binary(max_size=200), row_text, mutated(valid))


def nonblank_lines(data: bytes) -> int:
    """What `motchallenge.text_lines` counts (only called for bytes that decoded)."""
    return sum(1 for line in data.decode("utf-8-sig").splitlines() if line.strip())


def decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return True


def assert_names(error: DataError, path: Path) -> None:
    event(f"DataError {error.field}")  # `pytest --hypothesis-show-statistics` shows what was reached
    assert error.file == str(path), error
    assert str(error).startswith(str(path)), error


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


INFO = mot.SeqInfo("seq", 6, 64, 48, 25.0)
RESULTS = b"1,1,5.00,6.00,10.00,20.00,0.9000,-1,-1,-1\n2,1,6.5,6,10,20,0.8,-1,-1,-1\n3,2,1,2,3,4,0.5\n"
GT = b"1,1,5,6,10,20,1,1,1\n2,1,6,6,10,20,1,1,0.5\n3,2,-4,10,12,24,0,7,0.25\n4,1,5,6,10,20,1\n"
DET = b"1,-1,5,6,10,20,0.9,-1,-1,-1\n3,-1,7,6,10,20,0.4\n6,-1,60,40,10,20,-0.2,-1,-1,-1\n"
SEQINFO = (
    b"[Sequence]\nname=seq\nimDir=img1\nframeRate=25\nseqLength=6\nimWidth=64\nimHeight=48\nimExt=.jpg\n"
)


@FUZZ
@given(data=inputs(RESULTS))
def test_results_files(folder, data):
    path = folder / "results.txt"
    path.write_bytes(data)
    try:
        rows = mot.read_results(path, seq_length=INFO.length)
    except DataError as error:
        assert_names(error, path)
        return
    event("parsed")
    assert rows.shape == (nonblank_lines(data), len(mot.RESULT_FIELDS))
    assert np.isfinite(rows).all() and (rows[:, 0] >= 1).all() and (rows[:, 0] <= INFO.length).all()


@FUZZ
@given(data=inputs(GT), benchmark=st.sampled_from(mot.BENCHMARKS))
def test_gt_files_convert_and_evaluate_agree(folder, data, benchmark):
    path = folder / "gt.txt"
    path.write_bytes(data)
    lenient = Issues(lenient=True)
    try:
        rows = mot.read_gt_rows(path, INFO, benchmark, lenient)
    except DataError as error:  # file-level (encoding): the same for every reader
        assert_names(error, path)
        with pytest.raises(DataError):
            mot.read_gt(path, INFO, benchmark)
        return
    # Lenient: every non-blank line is a row or a recorded error naming this file.
    assert len(rows) + len(lenient.skipped) == nonblank_lines(data)
    for error in lenient.skipped:
        assert_names(error, path)
        assert error.line is not None
    assert all(math.isfinite(v) for row in rows for v in (*row.box, row.visibility))
    try:
        table = mot.read_gt(path, INFO, benchmark)  # evaluate's reader (strict)
    except DataError as error:
        assert_names(error, path)
        assert lenient.skipped, "evaluate rejected a gt file the converter accepts"
        assert (error.line, error.field) == (lenient.skipped[0].line, lenient.skipped[0].field)
        return
    event("parsed")
    assert not lenient.skipped, "evaluate accepted a gt file the converter rejects"
    assert table.shape == (len(rows), len(mot.GT_FIELDS)) and np.isfinite(table).all()


def frame_index(folder: Path) -> FrameIndex:
    return FrameIndex(folder, {"seq": np.arange(1, 7)}, {"seq": False}, {"seq": (64, 48)}, {})


@FUZZ
@given(data=inputs(DET))
def test_det_files_convert_and_pseudo_labels_agree(folder, data):
    path = folder / "det.txt"
    path.write_bytes(data)
    lenient = Issues(lenient=True)
    try:
        rows = mot.read_det_rows(path, INFO, "det", lenient)
    except DataError as error:
        assert_names(error, path)
        with pytest.raises(DataError):
            read_det_txt(path, "seq", frame_index(folder))
        return
    assert len(rows) + len(lenient.skipped) == nonblank_lines(data)
    for error in lenient.skipped:
        assert_names(error, path)
    try:
        dets = read_det_txt(path, "seq", frame_index(folder))  # the pseudo-label source's reader
    except DataError as error:
        assert_names(error, path)
        assert lenient.skipped, "the pseudo-label reader rejected a det.txt the converter accepts"
        return
    event("parsed")
    assert not lenient.skipped, "the pseudo-label reader accepted a det.txt the converter rejects"
    boxes = np.concatenate([b for b, _ in dets.values()]) if dets else np.zeros((0, 4))
    assert len(boxes) == len(rows) and np.isfinite(boxes).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


@FUZZ
@given(data=inputs(SEQINFO))
def test_seqinfo_files(folder, data):
    path = folder / "seqinfo.ini"
    path.write_bytes(data)
    try:
        info = mot.read_seqinfo(path, required=("seqLength", "imWidth", "imHeight"))
    except DataError as error:
        assert_names(error, path)
        return
    event("parsed")
    assert isinstance(info.length, int) and info.length >= 0
    assert (
        isinstance(info.width, int) and info.width >= 1 and isinstance(info.height, int) and info.height >= 1
    )
    assert info.frame_rate is None or (math.isfinite(info.frame_rate) and info.frame_rate > 0)
    assert "\\" not in info.im_dir and ".." not in info.im_dir.split("/") and not info.im_dir.startswith("/")
    assert info.im_ext.startswith(".")


@pytest.fixture(scope="module")
def crowdhuman(tmp_path_factory) -> Path:
    return write_crowdhuman(tmp_path_factory.mktemp("crowdhuman"))


CROWDHUMAN_VALID = b"".join(
    json.dumps(entry).encode() + b"\n"
    for entry in (
        {
            "ID": "img_b",
            "gtboxes": [
                {"tag": "person", "fbox": [2, 3, 10, 20], "vbox": [2, 3, 10, 10], "extra": {"box_id": 0}},
                {"tag": "person", "fbox": [30, 5, 12, 30], "extra": {"box_id": 1, "ignore": 1}},
                {"tag": "mask", "fbox": [40, 5, 10, 10], "extra": {"box_id": 2, "ignore": 1}},
            ],
        },
        {"ID": "img_a", "gtboxes": [{"tag": "person", "fbox": [-5, 0, 20, 40], "extra": {}}]},
    )
)
ENTRY_FIELDS = {"json", "ID", "gtboxes"}  # errors that skip a whole line (image); others skip a box

# JSON values of the wrong type or range, for the structure-aware CrowdHuman and det_db inputs.
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.just([]),
    st.just({}),
)


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy = JUNK, odds: int = 6) -> st.SearchStrategy:
    """`good` about `odds` times in `odds + 1`, else `bad` (one_of would weigh each JUNK branch alike)."""
    return st.integers(0, odds).flatmap(lambda k: bad if k == 0 else good)


NUMBER = mostly(st.one_of(st.integers(-50, 80), st.floats(-50, 80)))
BOX = mostly(st.lists(NUMBER, min_size=4, max_size=4), st.one_of(st.lists(NUMBER, max_size=6), JUNK))
EXTRA = mostly(st.fixed_dictionaries({}, optional={"ignore": st.sampled_from([0, 1, 1, 0, "1", True, 2])}))
GTBOX = mostly(
    st.fixed_dictionaries(
        {"tag": st.sampled_from(["person", "person", "mask", 3]), "fbox": BOX},
        optional={"vbox": BOX, "extra": EXTRA},
    )
)
ENTRY = mostly(
    st.fixed_dictionaries(
        {"ID": st.sampled_from(["img_a", "img_b", "img_a", "img_b", "img_x", "../img_a", "img_a\x00", 7])},
        optional={"gtboxes": mostly(st.lists(GTBOX, max_size=3))},
    )
)
STRUCTURED_ODGT = st.lists(ENTRY, min_size=1, max_size=4).map(
    lambda entries: b"".join(json.dumps(entry).encode() + b"\n" for entry in entries)
)


@FUZZ
@given(
    data=mostly(
        STRUCTURED_ODGT, st.one_of(st.binary(max_size=200), mutated(CROWDHUMAN_VALID, max_ops=3)), odds=1
    )
)
def test_crowdhuman_odgt(crowdhuman, data):
    path = crowdhuman / "annotation_train.odgt"
    path.write_bytes(data)
    lines = sum(1 for line in data.removeprefix(b"\xef\xbb\xbf").splitlines() if line.strip())
    lenient = Issues(lenient=True)
    try:
        sequence = read_crowdhuman(crowdhuman, "train", lenient)
    except DataError as error:
        assert_names(error, path)
        return
    for error in lenient.skipped:
        assert_names(error, path)
        assert error.line is not None
    event(f"parsed, {len(sequence.frames)} images, {len(lenient.skipped)} skipped")
    skipped_lines = sum(1 for e in lenient.skipped if e.field in ENTRY_FIELDS)
    assert len(sequence.frames) + skipped_lines == lines
    for frame in sequence.frames:
        assert frame.image_path.is_file() and len(frame.fields) == len(frame.objects)
        for row in frame.objects:
            x, y, w, h = row.box
            assert all(math.isfinite(v) for v in row.box) and w > 0 and h > 0
            assert 0.0 <= row.visibility <= 1.0
    try:
        read_crowdhuman(crowdhuman, "train", Issues())
    except DataError as error:
        assert lenient.skipped and (error.line, error.field) == (
            lenient.skipped[0].line,
            lenient.skipped[0].field,
        )
    else:
        assert not lenient.skipped


JSON_DB = json.dumps(
    {
        "Synthetic/train/seq/img1/00000001.txt": ["5,6,10,20,0.9\n", "1.5,2,3,4,0.1\n"],
        "Synthetic/train/seq/img1/00000006.txt": [],
        "Synthetic/train/seq/img1/00000003.txt": ["-4,10,12,24,0.5"],
    },
    indent=1,
).encode()


DB_ROW = st.lists(st.one_of(st.integers(-20, 80), st.floats(-20, 80)), min_size=4, max_size=6).map(
    lambda values: ",".join(map(str, values)) + "\n"
)
STRUCTURED_DB = st.dictionaries(
    mostly(
        st.sampled_from(
            [
                "Synthetic/train/seq/img1/00000001.txt",
                "Synthetic/train/seq/img1/00000006.txt",
                "Synthetic/train/seq/img1/00000002.txt",
            ]
        ),
        st.sampled_from(
            [
                "Synthetic/train/seq/img1/00000009.txt",  # a frame the split lacks
                "Synthetic/train/other/img1/00000001.txt",  # a sequence it lacks
                "seq/img1/\u00b2.txt",  # a digit int() refuses
                "00000001.txt",
            ]
        ),
        odds=3,
    ),
    mostly(
        st.lists(mostly(st.one_of(DB_ROW, st.text(alphabet="0123456789,.-e naif", max_size=30))), max_size=3)
    ),
    max_size=3,
).map(lambda db: json.dumps(db).encode())


@FUZZ
@given(data=mostly(STRUCTURED_DB, inputs(JSON_DB), odds=1))
def test_json_detection_db(folder, data):
    path = folder / "db.json"
    path.write_bytes(data)
    try:
        dets, skipped = read_json_db(path, frame_index(folder))
    except DataError as error:
        assert_names(error, path)
        return
    # Accepted: every entry string of every key is one box (no key prefix, so nothing skipped).
    event("parsed")
    db = json.loads(data.decode("utf-8-sig"))
    assert skipped == 0
    assert sum(len(b) for b, _ in dets.values()) == sum(len(v) for v in db.values())
    for boxes, scores in dets.values():
        assert np.isfinite(boxes).all() and np.isfinite(scores).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def _png(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=300),
        mutated(jpeg(1, 16, 12), max_ops=3),
        mutated(_png(2), max_ops=3),
        st.sampled_from([jpeg(3, 16, 12), _png(4)]).flatmap(
            lambda valid: st.integers(0, len(valid) - 1).map(lambda n: valid[:n])  # every truncation
        ),
    )
)
def test_images(folder, data):
    path = folder / "frame.img"
    try:
        width, height = image_size(data, path)
    except DataError as error:
        assert_names(error, path)
        assert error.kind == "corrupt_image"
        return
    # Accepted: the loader's decoder (OpenCV) reads it too, at the size reported.
    event("parsed")
    image = decode_image(data)
    assert width > 0 and height > 0 and image.shape[:2] == (height, width)
