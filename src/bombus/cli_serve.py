"""`bombus serve`: the HTTP server (OpenAI-compatible API, task routes, continuous batching) under uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from .cli_tasks import _lengths, _positive_int
from .errors import ConfigError


def add_serve(commands) -> None:
    p = commands.add_parser(
        "serve", help="serve models over HTTP: OpenAI-compatible API and task routes",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve models over HTTP (needs the server extra: pip install 'bombus[server]'). Routes: "
                    "/v1/completions, /v1/chat/completions, /v1/embeddings, /v1/models, /v1/{fill-mask, classify, "
                    "tag, answer, zero-shot, embed, similar}, /health, /metrics. Without --model: SmolLM2-135M-"
                    "Instruct (completions, chat) and all-MiniLM-L6-v2 (embeddings).")
    p.add_argument("-m", "--model", action="append", metavar="[NAME=]SOURCE",
                   help="model folder, .gguf file or hub repo id (repeatable); NAME= sets the name clients use")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'; None: $BOMBUS_API_KEY if set")
    p.add_argument("--max-batch-size", type=_positive_int, default=32, help="generation slots per model")
    p.add_argument("--max-length", type=_positive_int, help="tokens per slot, prompt + completion; None: "
                   "min(model max_positions, 2048)")
    p.add_argument("--max-queue", type=_positive_int, default=256, help="waiting requests before 503")
    p.add_argument("--batch-size", type=_positive_int, default=16, help="encoder task batch size")
    p.add_argument("--sequence-length", type=_lengths, metavar="N[,N...]",
                   help="encoder tasks: pad to this length or the smallest of these buckets (default: longest input)")
    p.add_argument("--max-body-bytes", type=_positive_int, default=4 * 1024 * 1024)
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="weights dtype (default float32)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    group = p.add_argument_group("Ray Serve", "serve on replicas on a local Ray or a cluster (pip install 'bombus[ray]')")
    group.add_argument("--ray", action="store_true", help="run the server as a Ray Serve deployment")
    group.add_argument("--replicas", type=_positive_int, default=1, help="with --ray: replicas, each with the models")
    group.add_argument("--max-replicas", type=_positive_int, help="with --ray: autoscale from --replicas up to this")
    group.add_argument("--replica-cpus", type=float, default=1.0, help="with --ray: CPUs each replica reserves")
    group.add_argument("--address", help="with --ray: the Ray cluster: auto (started by `ray start --head`), "
                       "HOST:PORT or ray://HOST:10001; unset: a Ray started here")
    p.set_defaults(run=run_serve)


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `create_app` options from the command line."""
    return {"max_batch_size": args.max_batch_size, "max_length": args.max_length, "max_queue": args.max_queue,
            "batch_size": args.batch_size, "sequence_length": args.sequence_length,
            "max_body_bytes": args.max_body_bytes, "device": args.device, "dtype": args.dtype}


def run_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .serving.http import create_app
    except ImportError as e:
        raise ConfigError(f"bombus serve needs the server extra ({e.name} is missing): "
                          f"pip install 'bombus[server]'") from None
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_key = args.api_key if args.api_key is not None else os.environ.get("BOMBUS_API_KEY")
    if args.ray:
        return _run_on_ray(args, api_key)
    app = create_app(args.model, api_key=api_key, **server_options(args))
    # uvicorn's shutdown on SIGTERM/SIGINT stops accepting, waits for the requests in flight (streams included),
    # then runs the app's lifespan end, which lets the engines finish.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def _run_on_ray(args: argparse.Namespace, api_key: str | None) -> int:
    """`bombus serve --ray`: the same app as a Ray Serve deployment, until Ctrl-C (which removes it)."""
    import time

    try:
        from ray import serve

        from .serving.ray.serve import APP_NAME, run
    except ImportError as e:
        raise ConfigError(f"bombus serve --ray needs the ray extra ({e.name} is missing): "
                          f"pip install 'bombus[ray]'") from None
    if args.max_replicas is not None and args.max_replicas < args.replicas:
        raise ConfigError(f"--max-replicas {args.max_replicas} is below --replicas {args.replicas}")
    sizing: dict[str, Any] = {"replicas": args.replicas}
    if args.max_replicas is not None:
        sizing = {"autoscaling": {"min_replicas": args.replicas, "max_replicas": args.max_replicas}}
    url = run(args.model, host=args.host, port=args.port, address=args.address, api_key=api_key,
              num_cpus=args.replica_cpus, **sizing, **server_options(args))
    logging.getLogger("bombus.serve").warning("serving on Ray Serve at %s (Ctrl-C stops)", url)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        serve.delete(APP_NAME)
    return 0
