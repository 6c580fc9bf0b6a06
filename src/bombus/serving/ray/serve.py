"""Online serving on Ray Serve: the app of `bombus serve` (OpenAI-compatible routes, task routes, continuous
batching for generation, metrics) as a Serve deployment, its FastAPI app mounted through Serve's ingress, on
as many replicas as asked (or autoscaled). Each replica builds the app, and so loads the models, itself.

    from bombus.serving.ray.serve import deployment, run
    run(["./my-model", "embed=./minilm"], replicas=2, port=8000)       # on the Ray this process joins
    # or: ray.serve.run(deployment([...], autoscaling={"min_replicas": 1, "max_replicas": 4}))

Serve's proxy spreads the requests over the replicas and replaces a replica that dies.
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve

from ...errors import ConfigError
from .cluster import connect

APP_NAME = "bombus"


@serve.ingress()
class BombusServer:
    """A replica: the `bombus serve` app (`bombus.serving.http.create_app`), built when the replica starts."""

    def __init__(self, models: list[str] | None, api_key: str | None, options: dict[str, Any]):
        self.models, self.api_key, self.options = models, api_key, options

    def __serve_build_asgi_app__(self):
        from ..http import create_app

        return create_app(self.models, api_key=self.api_key, **self.options)


def deployment(models: list[str] | None = None, *, replicas: int = 1, autoscaling: dict[str, Any] | None = None,
               api_key: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
               max_ongoing_requests: int = 256, health_check_period_s: float = 2.0, **options: Any) -> Any:
    """The Serve application (bound deployment) of `bombus serve`.

    `models` and `options` as in `bombus.serving.http.create_app` (None: the embedded defaults; options such
    as `max_batch_size`, `batch_size`, `device`, `dtype`; unknown names raise `ConfigError` here, before any
    replica starts). `api_key` [None: $BOMBUS_API_KEY of this process, else none]. Sizing: `replicas` [1]
    fixed replicas, or `autoscaling`, Serve's autoscaling config (e.g. {"min_replicas": 1, "max_replicas":
    4, "target_ongoing_requests": 32}); `num_cpus` [1.0] / `num_gpus` [0.0] per replica;
    `max_ongoing_requests` [256] requests a replica holds at once (its engine batches them); a replica that
    fails its health check (every `health_check_period_s` [2.0] seconds) is replaced.
    """
    from ..http import DEFAULTS

    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown server option(s) {unknown}; the options are {sorted(DEFAULTS)}")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise ConfigError(f"replicas must be a positive int, got {replicas!r}")
    settings: dict[str, Any] = {"name": "BombusServer", "max_ongoing_requests": max_ongoing_requests,
                                "health_check_period_s": health_check_period_s,
                                "ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus}}
    if autoscaling is not None:
        settings["autoscaling_config"] = dict(autoscaling)
    else:
        settings["num_replicas"] = replicas
    key = api_key if api_key is not None else (os.environ.get("BOMBUS_API_KEY") or None)
    return serve.deployment(BombusServer, **settings).bind(list(models) if models else None, key, options)


def run(models: list[str] | None = None, *, host: str = "127.0.0.1", port: int = 8000, address: str | None = None,
        route_prefix: str = "/", **deployment_options: Any) -> str:
    """Deploy `deployment(models, **deployment_options)` on the Ray at `address` (`cluster.connect`) behind
    Serve's HTTP proxy on `host`:`port`, and wait until it is ready; returns its URL. It runs until
    `serve.delete(APP_NAME)` / `serve.shutdown()` (or, on a Ray started here, until this process ends)."""
    application = deployment(models, **deployment_options)  # bad options fail before joining Ray
    connect(address)
    serve.start(http_options={"host": host, "port": port})
    serve.run(application, name=APP_NAME, route_prefix=route_prefix)
    return f"http://{host}:{port}{route_prefix.rstrip('/')}"
