"""Starting and joining Ray: loopback-only by default, the same code on a laptop and a cluster."""

from __future__ import annotations

import os

# Ray reads these at import/start time. Loopback sockets only (see shared stack notes).
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs):
    """Connect to `address` (or $RAY_ADDRESS), or start a local instance bound to 127.0.0.1.

    Idempotent: an already-initialised Ray is returned as is.
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
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **kwargs,
        )
    return ray
