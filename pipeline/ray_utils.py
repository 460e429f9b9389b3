"""Starting and joining Ray: loopback-only by default, the same code on a laptop and a cluster."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import socket
import sys

# Ray reads these at start time (set before `ray.init`, inherited by its processes): loopback
# sockets only, and a faster, quieter Ray Train start-up (shared stack notes).
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
    "RAY_USAGE_STATS_ENABLED": "0",
}


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


RENDEZVOUS = "torch.distributed.rendezvous"  # the module, not the function of the same name


def bind_rendezvous_to_loopback() -> None:
    """Make torch.distributed's rendezvous store listen on its loopback address only.

    torch's TCPStore server (rank 0 hosts it for DDP) listens on every interface even when
    MASTER_ADDR is 127.0.0.1. For a loopback master we bind the socket ourselves and hand its
    file descriptor to the store (`master_listen_fd`), so a local training job opens no port
    on other interfaces. Installed in every Ray worker by `init_ray` (worker_process_setup_hook).

    Most of those processes (Ray Train's controller, the progress queue, ...) never import torch:
    the patch waits for the module's first import instead of importing torch in each, which cost
    ~4 s of every local training start on 2 cores (benchmarks/results/startup.json).
    """
    module = sys.modules.get(RENDEZVOUS)
    if module is not None:
        _patch_rendezvous(module)
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds `torch.distributed.rendezvous` as usual and patches it right after it executes."""

    def find_spec(self, name, path, target=None):
        if name != RENDEZVOUS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _patch_rendezvous(module)

        spec.loader.exec_module = exec_module  # this spec's own loader instance
        return spec


def _patch_rendezvous(rendezvous) -> None:
    if getattr(rendezvous, "_motrv3_loopback", False):
        return
    create_store = rendezvous._create_c10d_store

    def create_loopback_store(hostname, port, rank, world_size, timeout, use_libuv=True):
        if rank != 0 or hostname not in LOOPBACK_HOSTS:
            return create_store(hostname, port, rank, world_size, timeout, use_libuv=use_libuv)
        from torch.distributed import TCPStore

        family = socket.AF_INET6 if hostname == "::1" else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", port))
        listener.listen(128)
        return TCPStore(
            hostname,
            port,
            world_size,
            True,
            timeout,
            multi_tenant=True,
            master_listen_fd=listener.detach(),  # the store owns the socket from here on
            use_libuv=use_libuv,
        )

    rendezvous._create_c10d_store = create_loopback_store
    rendezvous._motrv3_loopback = True


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs):
    """Connect to `address` (or $RAY_ADDRESS), or start a local instance bound to 127.0.0.1.

    A local instance also installs `bind_rendezvous_to_loopback` in its workers, so DDP's
    rendezvous store does not listen beyond loopback either. Idempotent: an already-initialised
    Ray is returned as is.
    """
    for key, value in LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
    else:
        runtime_env = dict(kwargs.pop("runtime_env", None) or {})
        runtime_env.setdefault("worker_process_setup_hook", "pipeline.ray_utils.bind_rendezvous_to_loopback")
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            runtime_env=runtime_env,
            **kwargs,
        )
    return ray
