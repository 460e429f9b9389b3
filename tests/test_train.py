"""Stage train on a real local Ray cluster (127.0.0.1), the real model/criterion/loader and MLflow store.

A tiny model and tiny synthetic data keep each Ray Train run to a few seconds of compute; most
of the time is Ray start-up. One 2-worker run (with an injected worker fault) serves several
tests; a second pair of runs checks kill-and-restart against an uninterrupted run. Both start
from an init checkpoint (as the default pipeline's MOTR/MOTRv3 start from the detector's), so
the restored workers must freeze what the first attempt froze.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from pipeline.params import load_params
from pipeline.paths import REPO_ROOT

pytestmark = pytest.mark.slow

# A small model at a small image size: the code paths of the CPU profile, at a fraction of its cost.
TINY = [
    # The cpu profile's short-run recipe off: these tests count frames and overfit in few steps.
    "train.clip_lengths=[]",
    "train.warmup_steps=0",
    "train.validate_every_epochs=0",
    "model.frozen_bn=true",
    "model.backbone=resnet18",
    "model.d_model=32",
    "model.nheads=2",
    "model.enc_layers=1",
    "model.dec_layers=2",
    "model.dim_feedforward=64",
    "model.enc_n_points=2",
    "model.dec_n_points=2",
    "model.num_queries=8",
    "synthetic.width=160",
    "synthetic.height=96",
    "synthetic.min_objects=2",
    "synthetic.max_objects=3",
    "data.train_scales=[96]",
    "data.train_max_size=160",
    "data.clip_length=2",
    "data.sample_interval_min=1",
    "data.sample_interval_max=1",
    "data.random_crop=false",
    "data.flip_prob=0.0",
    "dataset.test_split=null",
    "train.cpus_per_worker=1",
    "train.max_failures=1",
    "train.init_checkpoint=null",  # the cpu profile starts from the pipeline's detector
]


def tiny_params(tmp: Path, *extra: str):
    return load_params(
        REPO_ROOT / "params.yaml",
        [*TINY, f"dataset.root={tmp / 'raw'}", f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}", *extra],
    )


def make_data(tmp: Path, frames: int) -> Path:
    """One training sequence of `frames` frames (real generate + convert stages' code)."""
    from pipeline.data.synthetic import generate
    from pipeline.steps.convert import run as convert

    params = tiny_params(tmp, "synthetic.sequences={train: 1, val: 1}", f"synthetic.frames={frames}")
    generate(params.synthetic, tmp / "raw", progress=False)
    convert(params, tmp / "clips", progress=False)
    return tmp / "clips"


def make_init_checkpoint(tmp: Path, params, method: str) -> Path:
    """A checkpoint of ours holding every weight of `method`'s model (other weights than the run's
    seed draws), so a run from it freezes the backbone stem."""
    import motrv3
    from pipeline.steps.train.methods import method_params

    effective = method_params(params, method)
    torch.manual_seed(effective.seed + 1)
    model = motrv3.build_model(
        effective.model.to_config(), effective.tracking.to_config(), effective.tgd.to_config()
    )
    return motrv3.save_checkpoint(tmp / "init" / "checkpoint.pt", model, effective.as_dict())


def stem_state(state: dict, params) -> dict:
    """The entries of a model state dict that belong to the backbone's stem."""
    import motrv3

    names = motrv3.build_model(params.model.to_config()).backbone.stem_names
    prefixes = tuple(f"backbone.body.{name}." for name in names)
    return {k: v for k, v in state.items() if k.startswith(prefixes)}


@pytest.fixture(scope="module")
def local_ray():
    from pipeline.ray_utils import init_ray

    ray = init_ray(num_cpus=2)
    yield ray
    ray.shutdown()  # only the instance this module started


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory, local_ray):
    """MOTR from an init checkpoint on one 2-frame clip (overfit), 2 workers, 6 steps, a fault
    injected before step 3."""
    from pipeline.steps.train import run as train
    from pipeline.steps.train.worker import FAULT_ENV

    tmp = tmp_path_factory.mktemp("train2")
    clips = make_data(tmp, frames=2)  # exactly one clip
    params = tiny_params(
        tmp,
        "train.workers=2",
        "train.batch_size=2",
        "train.epochs=6",
        "train.lr_drop=6",
        "train.lr=1.0e-3",
        "train.lr_backbone=1.0e-4",
        f"train.storage_path={tmp / 'ray'}",
        "tracking.drop_track_prob=0.0",
        "tracking.fp_track_prob=0.0",
    )
    init = make_init_checkpoint(tmp, params, "motr")
    params.train.init_checkpoint = str(init)
    os.environ[FAULT_ENV] = "3"
    watcher = WorkerSocketWatcher()
    watcher.start()
    try:
        started = time.perf_counter()
        metrics = train(params, "motr", tmp / "models" / "motr", clips_dir=clips, progress=False)
        seconds = time.perf_counter() - started
    finally:
        os.environ.pop(FAULT_ENV)
        watcher.stop.set()
        watcher.join()
    return {
        "worker_listening": watcher.seen,
        "tmp": tmp,
        "params": params,
        "metrics": metrics,
        "out": tmp / "models" / "motr",
        "seconds": seconds,
        "init": init,
    }


def test_two_workers_overfit_one_clip(two_worker_run):
    from mlflow.tracking import MlflowClient

    metrics = two_worker_run["metrics"]
    assert metrics["world_size"] == 2
    assert metrics["global_steps"] == 6 and metrics["epochs"] == 6
    client = MlflowClient(tracking_uri=two_worker_run["params"].mlflow.tracking_uri)
    history = sorted(client.get_metric_history(metrics["mlflow_run_id"], "train/loss"), key=lambda m: m.step)
    losses = {m.step: m.value for m in history}  # a retried step is logged twice with the same value
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    drops = sum(losses[s + 1] < losses[s] for s in range(1, 6))
    assert drops >= 4 and losses[6] < 0.9 * losses[1], losses


def test_worker_fault_is_recovered_from_checkpoint(two_worker_run):
    metrics = two_worker_run["metrics"]
    assert metrics["worker_group_starts"] == 2  # the first attempt died, FailureConfig restarted it
    markers = list((two_worker_run["tmp"] / "ray").glob("*.fault_injected"))
    assert len(markers) == 1 and "global step 3" in markers[0].read_text()
    assert metrics["global_steps"] == 6
    # The restarted group froze what the first froze: the stem stays the init file's, the rest trains.
    params = two_worker_run["params"]
    init = torch.load(two_worker_run["init"], weights_only=True)["model"]
    out = torch.load(two_worker_run["out"] / "checkpoint.pt", weights_only=True)["model"]
    stem = stem_state(init, params)
    assert stem and all(torch.equal(out[k], v) for k, v in stem.items())
    trunk = [k for k in init if k.startswith("backbone.body.layer4.") and init[k].is_floating_point()]
    assert any(not torch.equal(out[k], init[k]) for k in trunk)


def test_outputs_and_mlflow_run(two_worker_run):
    from mlflow.tracking import MlflowClient

    import motrv3

    out, metrics = two_worker_run["out"], two_worker_run["metrics"]
    model, config = motrv3.load_checkpoint(out / "checkpoint.pt")
    assert (
        config["method"] == "motr" and config["rfs"]["enabled"] is False and config["tgd"]["enabled"] is False
    )
    assert config["model"]["num_queries"] == 8 and isinstance(model, torch.nn.Module)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["mlflow_run_id"] == metrics["mlflow_run_id"] and on_disk["clips_per_s"] > 0
    assert set(on_disk["final_losses"]) >= {"loss", "det_cls", "det_l1", "det_giou"}
    stats = json.loads((out / "assignment_stats.json").read_text())
    assert [e["epoch"] for e in stats["epochs"]] == list(range(6))
    # Both workers' frames are merged: 2 clips of 2 frames per epoch.
    assert all(e["assign/frames"] == 4 and len(e["slot_histogram"]) == 8 for e in stats["epochs"])

    client = MlflowClient(tracking_uri=two_worker_run["params"].mlflow.tracking_uri)
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.workers"] == "2" and run.data.params["rfs.enabled"] == "False"
    assert {"train/loss", "train/det_cls", "lr", "lr_backbone", "train/clips_per_s"} <= set(run.data.metrics)
    assert {"assign/last_det_share", "assign/misaligned_share", "epoch/loss"} <= set(run.data.metrics)
    lrs = client.get_metric_history(run.info.run_id, "lr_backbone")
    assert lrs and all(m.value == pytest.approx(1.0e-4) for m in lrs)  # lr_drop=6: no drop in 6 epochs
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/checkpoint.pt", "model/metrics.json", "model/params.json"} <= artifacts
    per_epoch = {a.path for a in client.list_artifacts(run.info.run_id, "assignment")}
    assert "assignment/epoch_005.json" in per_epoch


class WorkerSocketWatcher(threading.Thread):
    """While a run trains, the addresses each of its Ray Train worker processes listens on (pid →
    set), polled from outside: rank 0 hosts DDP's rendezvous store, every rank gloo's pairs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.seen: dict[int, set[str]] = {}

    def run(self) -> None:
        import psutil

        while not self.stop.wait(0.1):
            for process in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "RayTrainWorker" in " ".join(process.cmdline()):
                        self.seen.setdefault(process.pid, set()).update(listening_addresses([process.pid]))


def _is_loopback(text: str) -> bool:
    address = ipaddress.ip_address(text)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4 loopback too
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def test_local_ray_listens_on_loopback_only(two_worker_run):
    import psutil

    ours = psutil.Process().children(recursive=True)  # gcs_server, raylet, workers this module started
    assert any("raylet" in " ".join(p.cmdline()) for p in ours if p.is_running())
    addresses = listening_addresses([p.pid for p in ours])
    assert addresses and all(_is_loopback(a) for a in addresses), addresses


def test_ddp_workers_listen_on_loopback_only(two_worker_run):
    """The 2-rank DDP run's sockets (torch's TCPStore on rank 0, gloo's pairs): without the
    loopback binding of `pipeline.ray_utils` the store listens on '::'. Both worker groups count
    (the injected fault restarts the group)."""
    listening = {pid: found for pid, found in two_worker_run["worker_listening"].items() if found}
    assert len(listening) >= 2, two_worker_run["worker_listening"]  # each rank listened somewhere
    assert all(_is_loopback(a) for found in listening.values() for a in found), listening


def test_loopback_hook_imports_no_torch_and_patches_on_first_import():
    """The hook runs in every Ray worker process; most never use torch, so it must not import it."""
    script = (
        "import sys\n"
        "from pipeline.ray_utils import bind_rendezvous_to_loopback\n"
        "bind_rendezvous_to_loopback(); bind_rendezvous_to_loopback()\n"
        "assert 'torch' not in sys.modules, 'the hook imported torch'\n"
        "import torch.distributed\n"
        "rendezvous = sys.modules['torch.distributed.rendezvous']\n"
        "assert rendezvous._motrv3_loopback and rendezvous._create_c10d_store.__name__ == 'create_loopback_store'\n"
        "bind_rendezvous_to_loopback()  # already imported: patched once, not wrapped twice\n"
        "assert rendezvous._create_c10d_store.__closure__[0].cell_contents.__name__ == '_create_c10d_store'\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, check=True, timeout=120)


def _stage_command(tmp: Path, clips: Path, storage: Path, out: Path, init: Path) -> list[str]:
    command = [sys.executable, "-m", "stages.train", "--method", "motrv3", "--no-progress"]
    for item in RESUME_SETTINGS + [f"train.storage_path={storage}"]:
        command += ["--set", item]
    command += ["--clips-dir", str(clips), "--output-dir", str(out)]
    for item in TINY + [
        f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        f"train.init_checkpoint={init}",
    ]:
        command += ["--set", item]
    return command


RESUME_SETTINGS = [
    "train.workers=1",
    "train.batch_size=1",
    "train.epochs=2",
    "train.lr_drop=1",
    "train.max_steps_per_epoch=4",
    "train.checkpoint_every_steps=1",
    "train.ema_decay=0.9",  # the weights' average must resume too (it is what the run exports)
    "pld.enabled=false",
]


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the stage and the Ray processes it started (its own session), nothing else."""
    import psutil

    session = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getsid(p.pid) == proc.pid:
                session.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    for p in session:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(session, timeout=20)
    proc.wait(timeout=20)


def _resume_params(tmp: Path, storage: Path, init: Path, *extra: str):
    return load_params(
        REPO_ROOT / "params.yaml",
        [
            *TINY,
            *RESUME_SETTINGS,
            f"train.storage_path={storage}",
            f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
            f"train.init_checkpoint={init}",
            *extra,
        ],
    )


def test_kill_and_restart_resumes_to_same_weights(tmp_path, local_ray):
    """A run from an init checkpoint (frozen stem), killed and run again, exports the weights of an
    uninterrupted run; a checkpoint that cannot be restored says why and names --fresh."""
    from pipeline.steps.train import run as train

    clips = make_data(tmp_path, frames=8)  # 7 clips of 2 frames
    init = make_init_checkpoint(tmp_path, tiny_params(tmp_path, *RESUME_SETTINGS), "motrv3")
    logs = tmp_path / "logs"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MOTRV3_LOG_DIR": str(logs)}
    out_killed = tmp_path / "killed" / "motrv3"
    storage = tmp_path / "ray_killed"
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        _stage_command(tmp_path, clips, storage, out_killed, init),
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        snapshot = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(storage.glob("*/checkpoint_manager_snapshot.json"))
            if found and json.loads(found[0].read_text()).get("latest_checkpoint_result"):
                snapshot = found[0]
                break
            time.sleep(0.2)
        assert snapshot is not None, (tmp_path / "killed.log").read_text()[-3000:]
    finally:
        _kill_session(proc)
        log.close()
    assert not out_killed.joinpath("metrics.json").exists()  # it really died before finishing
    latest = json.loads(snapshot.read_text())["latest_checkpoint_result"]["metrics"]["global_step"]
    assert 1 <= latest < 8

    restarted = subprocess.run(
        _stage_command(tmp_path, clips, storage, out_killed, init),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
    resumed = json.loads((out_killed / "metrics.json").read_text())
    assert resumed["resumed_from_step"] == latest and resumed["global_steps"] == 8
    log = (logs / "train_motrv3.log").read_text()
    assert f"stem frozen (conv1, bn1, act1, maxpool, layer1; weights from {init}); restored from" in log
    assert "trained from scratch" not in log

    # The same config uninterrupted (in this process, another storage path → a fresh run).
    params = _resume_params(tmp_path, tmp_path / "ray_whole", init)
    whole = train(params, "motrv3", tmp_path / "whole" / "motrv3", clips_dir=clips, progress=False)
    assert whole["resumed_from_step"] is None and whole["global_steps"] == 8
    a = torch.load(out_killed / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "whole" / "motrv3" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    # The export is the moving average, not the last step's weights (kept in the Ray checkpoint).
    from ray.train import Checkpoint

    from pipeline.steps.train.checkpoints import load_state

    last = sorted(p for p in (tmp_path / "ray_whole").glob("*/checkpoint_*") if p.is_dir())[-1]
    with Checkpoint.from_directory(str(last)).as_directory() as directory:
        raw = load_state(Path(directory))
    assert all(torch.equal(raw["ema"][k], b[k]) for k in b)
    assert any(not torch.equal(raw["model"][k], b[k]) for k in b if b[k].is_floating_point())
    assert resumed["final_losses"] == pytest.approx(whole["final_losses"], rel=1e-6)
    stem = stem_state(torch.load(init, weights_only=True)["model"], params)
    assert stem and all(torch.equal(raw["model"][k], v) for k, v in stem.items())
    assert raw["frozen"]["stem"] and raw["frozen"]["weights_from"] == str(init)

    _check_unrestorable_checkpoint(last, params, clips, whole["ray_train_run"])


def _check_unrestorable_checkpoint(directory: Path, params, clips: Path, run: str) -> None:
    """A checkpoint written before the frozen layers were recorded: its optimiser state does not fit
    the model a restore builds. The worker says why and names --fresh (not a raw ValueError), and
    the driver passes that on. The worker runs here, with Ray Train's context stubbed: no Ray run."""
    import types

    import ray.train
    import ray.train.torch
    from ray.train.v2.api.exceptions import WorkerGroupError

    from pipeline.steps.train.driver import worker_training_error
    from pipeline.steps.train.methods import TrainingError, method_params
    from pipeline.steps.train.worker import WorkerLoop

    state = torch.load(directory / "state.pt", weights_only=True)
    del state["frozen"]
    torch.save(state, directory / "state.pt")
    context = types.SimpleNamespace(get_world_rank=lambda: 0, get_world_size=lambda: 1)
    config = {
        "params": method_params(params, "motrv3").model_dump(mode="json"),
        "method": "motrv3",
        "clips_dir": str(clips),
        "run": run,
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ray.train, "get_context", lambda: context)
        patch.setattr(
            ray.train, "get_checkpoint", lambda: ray.train.Checkpoint.from_directory(str(directory))
        )
        patch.setattr(ray.train.torch, "get_device", lambda: torch.device("cpu"))
        patch.setattr(ray.train.torch, "prepare_model", lambda model: model)
        with pytest.raises(TrainingError, match="--fresh") as failed:
            WorkerLoop(config)
    message = str(failed.value)
    assert message.startswith(f"cannot resume training run {run} from its checkpoint {directory}: ")
    assert "parameter group" in message and "predates the record of frozen layers" in message
    assert worker_training_error(WorkerGroupError("rank 0 failed", {0: failed.value})) is failed.value


@pytest.mark.parametrize("failing", ["checkpoint.pt", "assignment_stats.json"])
def test_export_into_a_full_disk_names_the_file_and_writes_nothing(tmp_path, monkeypatch, failing):
    """The stage's outputs are written all or none: ENOSPC on one leaves the previous set as it was."""
    import errno
    import types

    import motrv3
    from pipeline.steps.train.checkpoints import save_state
    from pipeline.steps.train.driver import export
    from pipeline.steps.train.methods import TrainingError, method_params

    effective = method_params(tiny_params(tmp_path), "motr")
    model = motrv3.build_model(effective.model.to_config(), effective.tracking.to_config())
    ray_checkpoint = tmp_path / "ray_checkpoint"
    history = [
        {"epoch": 0, "global_step": 1, "losses": {"loss": 1.0}, "assignment": {}, "slot_histogram": []}
    ]
    save_state(
        ray_checkpoint,
        {"model": model.state_dict(), "ema": None, "epoch": 1, "global_step": 1, "history": history}
        | {"clips": 1, "train_seconds": 1.0},
    )
    out = tmp_path / "models" / "motr"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text("previous run\n")

    def disk_full(handle, partial) -> None:
        handle.write(partial)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if failing == "checkpoint.pt":
        monkeypatch.setattr(torch, "save", lambda obj, handle, *a, **k: disk_full(handle, b"partial"))
    else:
        write_text = Path.write_text

        def full_text(path, text, *args, **kwargs):
            if not path.name.startswith(f".{failing}."):
                return write_text(path, text, *args, **kwargs)
            with open(path, "w") as handle:
                disk_full(handle, "partial")

        monkeypatch.setattr(Path, "write_text", full_text)
    checkpoint = types.SimpleNamespace(as_directory=lambda: contextlib.nullcontext(str(ray_checkpoint)))
    consumer = types.SimpleNamespace(starts=[])
    with pytest.raises(TrainingError) as failed:
        export(effective, "motr", "motr-test", checkpoint, out, consumer, "run-id", time.perf_counter())
    message = str(failed.value)
    assert message.startswith(f"{out / failing}: cannot write it (No space left on device)"), message
    assert "Free space there and run the stage again" in message
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]  # no new output, no temp file
    assert (out / "metrics.json").read_text() == "previous run\n"


def listening_addresses(pids: list[int]) -> set[str]:
    import psutil

    addresses = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    addresses.add(conn.laddr.ip)
    return addresses
