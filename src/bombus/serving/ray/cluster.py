"""Connecting to Ray: the cluster this process already joined, a local one started here, or an existing one
at an address (`auto`, `HOST:PORT`, `ray://HOST:10001`)."""

from __future__ import annotations

import socket
from typing import Any

from ...errors import ConfigError

HINT = ("start one with `ray start --head` on the head node (then --address auto there), pass ray://HEAD:10001 "
        "for a remote cluster, or leave --address out for a local Ray")


def connect(address: str | None = None, **init_options: Any) -> None:
    """Join Ray unless this process already has: `address` None joins the cluster `ray start` started on this
    machine, else starts a local Ray here ("local" always starts one); "auto" joins the one `ray start`
    started; "HOST:PORT" (the head's GCS) or "ray://HOST:10001" (Ray Client) a remote one. `init_options`
    go to `ray.init` (e.g. `num_cpus`). An unreachable address raises `ConfigError` (within seconds: the
    port is tried before Ray, whose own retries take about a minute)."""
    import ray

    if address not in (None, "auto", "local"):
        _check_port(address)  # even when joined already: an address that cannot work is a mistake to report
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, **{"logging_level": "WARNING", **init_options})
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot reach a Ray cluster at --address {address!r} ({first}); {HINT}") from None


def _check_port(address: str, timeout: float = 5.0) -> None:
    """A clear error now when nothing listens at `address`'s host and port."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"--address {address!r} is not auto, HOST:PORT or ray://HOST:PORT; {HINT}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"cannot reach a Ray cluster at --address {address!r}: nothing answers at {host}:{port} "
                          f"({e.strerror or e}); {HINT}") from None
