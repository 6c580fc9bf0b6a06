"""The HTTP server of `bombus serve`: an OpenAI-compatible API (completions, chat completions, embeddings,
models) and task routes for every serving, over FastAPI.

    app = create_app(["./my-model", "embed=./minilm"], api_key="secret", max_batch_size=32)
    uvicorn.run(app, host="127.0.0.1", port=8000)

Generation goes through a continuous-batching `Engine` per generative model; encoder tasks go through the task
servings, whose batchers gather concurrent requests. Every error is a JSON body in OpenAI's shape with the
right status; the server goes on serving.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import os
import struct
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BombusError, ConfigError
from . import protocol
from .engine import Event, QueueFull
from .logprobs import TextOffsets, chat_logprobs, completion_logprobs
from .metrics import Metrics
from .protocol import APIError, bad
from .registry import TASK_ROUTES, ServedModel, parse_model_argument

log = logging.getLogger("bombus.serve")

ENGINE_OPTIONS = ("max_batch_size", "max_length", "max_queue", "prefill_batch", "window", "row_multiple",
                  "attention")
DEFAULTS = {"max_batch_size": 32, "max_length": None, "max_queue": 256, "prefill_batch": 4, "window": 64,
            "row_multiple": 4, "attention": None, "batch_size": 16, "batch_timeout_ms": 5.0, "sequence_length": None,
            "max_body_bytes": 4 * 1024 * 1024, "device": None, "dtype": None, "retry_after": 1}
DEFAULT_NAMES = {"generate": "SmolLM2-135M-Instruct", "embed": "all-MiniLM-L6-v2"}


def default_models() -> list[str]:
    """The embedded defaults as `NAME=PATH`: the generation default and all-MiniLM-L6-v2."""
    from ..cli_tasks import default_model

    return [f"{DEFAULT_NAMES[task]}={default_model(task)}" for task in ("generate", "embed")]


class Server:
    """The state behind an app: the served models, the options, the metrics."""

    def __init__(self, models: list[str] | None, api_key: str | None, options: dict[str, Any]):
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"unknown server option(s) {unknown}; the options are {sorted(DEFAULTS)}")
        self.options = {**DEFAULTS, **options}
        self.api_key = api_key if api_key is not None else (os.environ.get("BOMBUS_API_KEY") or None)
        self.metrics = Metrics()
        dtype = self.options["dtype"]
        if isinstance(dtype, str):
            import torch

            dtype = getattr(torch, dtype)
        engine = {k: self.options[k] for k in ENGINE_OPTIONS}
        runtime = {k: self.options[k] for k in ("batch_size", "batch_timeout_ms", "sequence_length")}
        self.models: dict[str, ServedModel] = {}
        try:
            for argument in (models if models else default_models()):
                name, source = parse_model_argument(argument)
                if name in self.models:
                    raise ConfigError(f"two models are named {name!r}; name them with NAME=PATH")
                log.info("loading %s from %s", name, source)
                self.models[name] = ServedModel(name, source, engine_options=engine, runtime=runtime,
                                                metrics=self.metrics, device=self.options["device"], dtype=dtype)
                log.info("serving %s: %s", name, ", ".join(self.models[name].tasks))
        except BaseException:
            self.close()
            raise

    def pick(self, name: Any, task: str) -> ServedModel:
        """The model a request names (or the first one offering `task`); 404 unknown, 400 wrong task."""
        if name is None:
            for served in self.models.values():
                if task in served.tasks:
                    return served
            raise APIError(404, f"no served model offers {task}; served: {self._listing()}", param="model",
                           code="model_not_found")
        if not isinstance(name, str):
            raise bad(f"model must be a string, got {name!r}", param="model")
        served = self.models.get(name)
        if served is None:
            raise APIError(404, f"the model {name!r} does not exist; served: {self._listing()}", param="model",
                           code="model_not_found")
        if task not in served.tasks:
            offering = [m.name for m in self.models.values() if task in m.tasks]
            raise bad(f"the model {name!r} does not serve {task} (it serves {', '.join(served.tasks)}); models "
                      f"serving {task}: {offering or 'none'}", param="model", code="wrong_task")
        return served

    def _listing(self) -> str:
        return ", ".join(f"{m.name} ({'/'.join(m.tasks)})" for m in self.models.values())

    def close(self) -> None:
        for served in self.models.values():
            served.close()


def create_app(models: list[str] | None = None, *, api_key: str | None = None, **options: Any) -> FastAPI:
    """The server as a FastAPI app (Ray Serve's ingress takes it as is).

    `models`: model folders, .gguf files or hub repo ids, each optionally `NAME=PATH` (the name clients pass as
    "model"; default: the folder name or file stem); None serves the embedded defaults (SmolLM2-135M-Instruct
    for completions and chat, all-MiniLM-L6-v2 for embeddings). `api_key` [None: the BOMBUS_API_KEY
    environment variable, else no key]: required as `Authorization: Bearer KEY` on /v1/* and /metrics.

    Options: `max_batch_size` [32] generation slots per model, `max_length` [min(max_positions, 2048)] tokens per
    slot (prompt + completion), `max_queue` [256] requests waiting for a slot before 503, `prefill_batch` [4],
    `window` [64], `row_multiple` [4], `attention` [rowwise on CPU] (see `Engine`); `batch_size` [16],
    `batch_timeout_ms` [5.0] and `sequence_length` [None: each batch padded to its longest input; an int or
    bucket lengths] of the encoder servings; `max_body_bytes` [4 MiB] (413 beyond); `device`, `dtype` of the models; `retry_after` [1] seconds.
    """
    server = Server(models, api_key, options)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        log.info("shutting down: finishing the requests in flight")
        await run_in_threadpool(server.close)

    app = FastAPI(title="bombus", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.bombus = server
    app.add_middleware(_RequestMiddleware, server=server)
    _add_error_handlers(app)
    _add_routes(app, server)
    import importlib.util

    if importlib.util.find_spec("bombus.serving.playground") is not None:
        from . import playground

        playground.mount(app)
    return app


# ---------------------------------------------------------------------------------------------------- plumbing
def _route_label(path: str) -> str:
    known = {"/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/embeddings"}
    if path in known or (path.startswith("/v1/") and path[4:] in TASK_ROUTES):
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return "other"


class _RequestMiddleware:
    """Request ids (X-Request-Id, taken from the request or made), the API key check, access logs and metrics."""

    def __init__(self, app: Any, server: Server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = headers.get("x-request-id") or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        path, route = scope["path"], _route_label(scope["path"])
        started = time.monotonic()
        status = [500]
        metrics = self.server.metrics

        async def respond(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        metrics.in_flight.inc()
        try:
            key = self.server.api_key
            if key is not None and (path.startswith("/v1") or path == "/metrics") and not _authorized(headers, key):
                error = APIError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                                 code="invalid_api_key")
                await JSONResponse(error.body(), status_code=401)(scope, receive, respond)
                return
            await self.app(scope, receive, respond)
        finally:
            metrics.in_flight.dec()
            elapsed = time.monotonic() - started
            code = str(status[0])
            metrics.requests.labels(route, code).inc()
            if status[0] >= 400:
                metrics.errors.labels(route, code).inc()
            metrics.latency.labels(route).observe(elapsed)
            log.info("request %s: %s %s -> %s in %.3f s", request_id, scope["method"], path, code, elapsed)


def _authorized(headers: dict[str, str], key: str) -> bool:
    given = headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def _error(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):
        return _error(error)

    @app.exception_handler(BombusError)
    async def bombus_error(request: Request, error: BombusError):
        return _error(_as_api_error(error, request.app.state.bombus))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        message = f"no route {request.method} {request.url.path}" if error.status_code in (404, 405) else \
            str(error.detail)
        return _error(APIError(error.status_code, message, code="not_found" if error.status_code == 404 else None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        log.exception("request %s failed", getattr(request.state, "request_id", "-"))
        return _error(APIError(500, f"internal error: {type(error).__name__}: {error}"))


def _as_api_error(error: BombusError, server: Server) -> APIError:
    if isinstance(error, QueueFull):
        return APIError(503, f"the server is busy: {error}; retry later", code="queue_full",
                        headers={"Retry-After": str(server.options["retry_after"])})
    return bad(str(error), code=type(error).__name__)


async def _json_body(request: Request, server: Server) -> dict[str, Any]:
    """The request's JSON object: 413 when larger than `max_body_bytes`, 400 when not a JSON object."""
    limit = server.options["max_body_bytes"]
    declared = request.headers.get("content-length")
    too_big = APIError(413, f"the request body exceeds {limit} bytes; send less (or start the server with a larger "
                            f"max_body_bytes)", code="body_too_large")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"the body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise bad(f"the body must be a JSON object, got {type(value).__name__}", code="invalid_json")
    return value


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "-")


# ---------------------------------------------------------------------------------------------------- routes
def _add_routes(app: FastAPI, server: Server) -> None:
    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(server.models)}

    @app.get("/metrics")
    async def metrics():
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [m.describe() for m in server.models.values()]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str):
        if name not in server.models:
            raise APIError(404, f"the model {name!r} does not exist; served: {server._listing()}", param="model",
                           code="model_not_found")
        return server.models[name].describe()

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _generate(request, server, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _generate(request, server, chat=True)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        body = await _json_body(request, server)
        protocol.check_fields(body, protocol.EMBEDDING_FIELDS, "/v1/embeddings")
        served = server.pick(body.get("model"), "embeddings")
        texts = protocol.embedding_inputs(body)
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise bad(f"encoding_format must be 'float' or 'base64', got {encoding!r}", param="encoding_format")
        serving = await run_in_threadpool(served.serving, "embed", {})
        results = await run_in_threadpool(serving, texts)
        counts = await run_in_threadpool(lambda: [len(served.tokenizer.encode(t)) for t in texts])
        data = []
        for i, result in enumerate(results):
            vector = result["embedding"]
            if encoding == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": i, "embedding": vector})
        return {"object": "list", "data": data, "model": served.name,
                "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}}

    @app.post("/v1/{task}")
    async def task_route(task: str, request: Request):
        if task not in TASK_ROUTES:
            raise APIError(404, f"no route POST /v1/{task}; the task routes are "
                                f"{['/v1/' + t for t in TASK_ROUTES]}", code="not_found")
        body = await _json_body(request, server)
        served = server.pick(body.get("model"), task)
        if "inputs" not in body:
            raise bad(f"the body needs \"inputs\" (the {task} serving's input, or a list of them)", param="inputs")
        inputs = body["inputs"]
        options = {k: v for k, v in body.items() if k not in ("model", "inputs")}
        corpus = None
        if task == "similar":
            if not isinstance(inputs, dict) or "query" not in inputs or "corpus" not in inputs:
                raise bad('similar takes "inputs": {"query": str or [str], "corpus": [str], "top_k": int}',
                          param="inputs")
            extra = set(inputs) - {"query", "corpus", "top_k"}
            if extra:
                raise bad(f"unknown key(s) {sorted(extra)} in inputs; similar takes query, corpus, top_k",
                          param="inputs")
            corpus = inputs["corpus"]
            if not isinstance(corpus, list) or not all(isinstance(t, str) for t in corpus):
                raise bad("inputs.corpus must be a list of strings", param="inputs.corpus")
            top_k = inputs.get("top_k", 5)
            serving = await run_in_threadpool(lambda: served.serving(task, options, corpus=corpus, top_k=top_k))
            inputs = inputs["query"]
        else:
            serving = await run_in_threadpool(served.serving, task, options)
        outputs = await run_in_threadpool(serving, inputs)
        return {"model": served.name, "outputs": outputs}


# ---------------------------------------------------------------------------------------------------- generation
class _Choice:
    """What one sequence (choice) produced so far."""

    def __init__(self, index: int, prompt_index: int):
        self.index, self.prompt_index = index, prompt_index
        self.text: list[str] = []
        self.tokens: list[Any] = []
        self.prompt: list[Any] | None = None  # echo with logprobs: the prompt's tokens
        self.offsets: TextOffsets | None = None  # streaming with logprobs: the generated tokens' offsets so far
        self.finish_reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0


async def _generate(request: Request, server: Server, *, chat: bool):
    body = await _json_body(request, server)
    route = "/v1/chat/completions" if chat else "/v1/completions"
    protocol.check_fields(body, protocol.CHAT_FIELDS if chat else protocol.COMPLETION_FIELDS, route)
    served = server.pick(body.get("model"), "chat" if chat else "completions")
    engine, tokenizer = served.engine, served.tokenizer
    settings = protocol.generation(body, chat=chat, default_max_tokens=None if chat else 16)
    echo = settings.echo
    if chat:
        conversation = protocol.messages(body)
        prompt_ids = [await run_in_threadpool(tokenizer.apply_chat_template, conversation,
                                              add_generation_prompt=True)]
        prompt_texts = [""]
    else:
        prompts = protocol.prompts(body)
        prompt_ids = [await run_in_threadpool(tokenizer.encode, p) if isinstance(p, str) else p for p in prompts]
        prompt_texts = [p if isinstance(p, str) else tokenizer.decode(p) for p in prompts]
    budgets = []
    for i, ids in enumerate(prompt_ids):
        # max_tokens 0 (echo) returns the prompt alone; unset, it is what the context leaves (at least 1)
        budget = settings.max_tokens if settings.max_tokens is not None else max(1, engine.max_length - len(ids))
        try:
            engine.check(len(ids), budget)
        except BombusError as e:
            where = f" (prompt {i})" if len(prompt_ids) > 1 else ""
            raise bad(f"{e}{where}", param="max_tokens" if settings.max_tokens is not None else
                      ("messages" if chat else "prompt"), code="context_length_exceeded") from None
        budgets.append(budget)

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
    request_id = _request_id(request)
    started = time.monotonic()
    choices: list[_Choice] = []
    sequences = []

    def handler(index: int):
        def on_event(event: Event) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (index, event))
            except RuntimeError:  # the event loop is gone: the request is over
                pass
        return on_event

    try:
        for i, ids in enumerate(prompt_ids):
            for j in range(settings.n):
                index = len(choices)
                choices.append(_Choice(index, i))
                sequences.append(engine.submit(ids, settings.options(budgets[i], j), handler(index),
                                               request_id=request_id))
    except BaseException:
        for sequence in sequences:
            sequence.cancel()
        raise
    log.info("request %s: %d sequence(s) queued for %s (prompt tokens %s)", request_id, len(sequences), served.name,
             [len(ids) for ids in prompt_ids])
    first_token = server.metrics.first_token.labels(served.name)
    kind = "chat.completion" if chat else "text_completion"
    identity = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "created": int(time.time()),
                "model": served.name}
    if settings.stream:
        stream = _stream(queue, choices, sequences, settings, chat=chat, echo=echo, prompt_texts=prompt_texts,
                         tokenizer=tokenizer, identity=identity, first_token=first_token, started=started,
                         request_id=request_id)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        remaining, seen_first, check = len(choices), False, time.monotonic() + 0.25
        while remaining:
            try:
                index, event = await asyncio.wait_for(queue.get(), timeout=0.25)
            except asyncio.TimeoutError:
                index, event = -1, None
            if time.monotonic() >= check:  # a few times a second: is anybody still waiting for the answer?
                check = time.monotonic() + 0.25
                if await request.is_disconnected():
                    log.info("request %s: client went away; its sequences are cancelled", request_id)
                    raise APIError(499, "the client closed the connection")
            if event is None:
                continue
            if not seen_first and event.tokens:
                first_token.observe(time.monotonic() - started)
                seen_first = True
            remaining -= _collect(choices[index], event)
    finally:
        for sequence in sequences:
            sequence.cancel()  # no-op for finished ones; frees the slots if this handler is cancelled
    failed = [c for c in choices if c.finish_reason in ("error", "cancelled")]
    if failed:
        raise APIError(500 if failed[0].finish_reason == "error" else 503,
                       f"generation failed: {failed[0].text[-1] if failed[0].text else failed[0].finish_reason}")
    out = []
    for c in choices:
        text = "".join(c.text)
        if chat:
            item = {"index": c.index, "message": {"role": "assistant", "content": text},
                    "logprobs": chat_logprobs(c.tokens) if settings.logprobs is not None else None,
                    "finish_reason": c.finish_reason}
        else:
            prefix = prompt_texts[c.prompt_index] if echo else ""
            logprobs = None
            if settings.logprobs is not None:
                logprobs = await run_in_threadpool(_choice_logprobs, tokenizer, c, len(prefix))
            item = {"index": c.index, "text": prefix + text, "logprobs": logprobs, "finish_reason": c.finish_reason}
        out.append(item)
    return {**identity, "object": kind, "choices": out, "usage": _usage(choices, settings.n)}


def _collect(choice: _Choice, event: Event) -> int:
    """Add an event to its choice; 1 when the choice is finished."""
    choice.prompt_tokens, choice.completion_tokens = event.prompt_tokens, event.completion_tokens
    if event.error is not None:
        choice.text.append(event.error)
    elif event.text:
        choice.text.append(event.text)
    choice.tokens.extend(event.tokens)
    if event.prompt is not None:
        choice.prompt = event.prompt
    if event.finish_reason is not None:
        choice.finish_reason = event.finish_reason
        return 1
    return 0


def _usage(choices: list[_Choice], n: int) -> dict[str, int]:
    prompt = sum(c.prompt_tokens for c in choices[::n])  # each prompt counted once, as OpenAI counts it
    completion = sum(c.completion_tokens for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _choice_logprobs(tokenizer: Any, choice: _Choice, start: int) -> dict[str, Any]:
    """A finished completion choice's `logprobs`: its echoed prompt's tokens (offsets from 0), then the generated
    ones (offsets from `start`, where the generated text begins)."""
    prompt = choice.prompt or []
    offsets = TextOffsets(tokenizer).add([t.id for t in prompt])
    offsets += TextOffsets(tokenizer, start).add([t.id for t in choice.tokens])
    return completion_logprobs(prompt + choice.tokens, offsets)


def _sse(data: Any) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8")


async def _stream(queue: asyncio.Queue, choices: list[_Choice], sequences: list, settings: protocol.Generation, *,
                  chat: bool, echo: bool, prompt_texts: list[str], tokenizer: Any, identity: dict[str, Any],
                  first_token: Any, started: float, request_id: str) -> AsyncIterator[bytes]:
    """Server-sent events of a generation request; a client that goes away cancels its sequences (their slots
    are free at the next step). With echo, a choice's first chunk is its prompt (with logprobs: when the engine
    has scored it); completion text offsets count from the start of the choice's whole text, as without
    streaming."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    logprobs = settings.logprobs is not None

    def chunk(choice: _Choice, text: str | None, tokens: list, finish: str | None, role: bool = False,
              offsets: list[int] | None = None):
        if chat:
            delta: dict[str, Any] = {}
            if role:
                delta = {"role": "assistant", "content": ""}
            elif text:
                delta = {"content": text}
            item = {"index": choice.index, "delta": delta,
                    "logprobs": chat_logprobs(tokens) if logprobs and tokens else None,
                    "finish_reason": finish}
        else:
            item = {"index": choice.index, "text": text or "",
                    "logprobs": completion_logprobs(tokens, offsets or []) if logprobs and tokens else None,
                    "finish_reason": finish}
        out = {**identity, "object": kind, "choices": [item]}
        if settings.include_usage:
            out["usage"] = None
        return _sse(out)

    finished = False
    try:
        for choice in choices:
            if chat:
                yield chunk(choice, None, [], None, role=True)
            elif echo and not logprobs:
                yield chunk(choice, prompt_texts[choice.prompt_index], [], None)
            if logprobs and not chat:
                start = len(prompt_texts[choice.prompt_index]) if echo else 0
                choice.offsets = TextOffsets(tokenizer, start)
        remaining, seen_first = len(choices), False
        while remaining:
            index, event = await queue.get()
            choice = choices[index]
            if not seen_first and event.tokens:
                first_token.observe(time.monotonic() - started)
                seen_first = True
            remaining -= _collect(choice, event)
            if event.finish_reason in ("error", "cancelled"):
                error = APIError(500 if event.finish_reason == "error" else 503,
                                 f"generation failed: {event.error or event.finish_reason}")
                yield _sse(error.body())
                finished = True
                return
            if event.prompt is not None:  # echo with logprobs: the prompt, scored
                offsets = await run_in_threadpool(TextOffsets(tokenizer).add, [t.id for t in event.prompt])
                yield chunk(choice, prompt_texts[choice.prompt_index], event.prompt, event.finish_reason,
                            offsets=offsets)
            elif event.text or event.tokens or event.finish_reason:
                offsets = choice.offsets.add([t.id for t in event.tokens]) if choice.offsets is not None else None
                yield chunk(choice, event.text, event.tokens, event.finish_reason, offsets=offsets)
        if settings.include_usage:
            yield _sse({**identity, "object": kind, "choices": [], "usage": _usage(choices, settings.n)})
        yield b"data: [DONE]\n\n"
        finished = True
    finally:
        for sequence in sequences:
            sequence.cancel()
        if not finished:
            log.info("request %s: client went away mid-stream; its sequences are cancelled", request_id)
