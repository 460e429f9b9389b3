"""A local Ray and the DDP process groups it starts listen on loopback only."""

from __future__ import annotations

import ipaddress

import pytest


def _is_loopback(text: str) -> bool:
    address = ipaddress.ip_address(text)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4 loopback too
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _worker_listening_addresses(config):
    """Train loop: report the addresses this worker listens on once DDP's process group is up."""
    import json
    import os
    from pathlib import Path

    import psutil
    import torch.distributed as dist

    assert dist.is_initialized() and dist.get_world_size() == 2
    dist.barrier()  # the rendezvous store (rank 0) and gloo pairs exist now
    listening = sorted(
        {
            c.laddr.ip
            for c in psutil.Process(os.getpid()).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
    )
    Path(config["out"], f"rank{dist.get_rank()}.json").write_text(json.dumps(listening))
    dist.barrier()


@pytest.mark.slow
def test_two_worker_ddp_listens_on_loopback_only(tmp_path):
    import json

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipeline.ray_utils import init_ray

    init_ray(num_cpus=2)
    try:
        trainer = TorchTrainer(
            _worker_listening_addresses,
            train_loop_config={"out": str(tmp_path)},
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            torch_config=TorchConfig(backend="gloo"),
            run_config=RunConfig(name="loopback", storage_path=str(tmp_path)),
        )
        result = trainer.fit()
        assert result.error is None
        # Rank 0 hosts torch's TCPStore: without the loopback binding it listens on '::'.
        per_rank = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
        assert all(per_rank), per_rank  # each rank listens somewhere (gloo pairs, store)
        assert all(_is_loopback(a) for addresses in per_rank for a in addresses), per_rank
    finally:
        ray.shutdown()
