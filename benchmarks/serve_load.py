"""Load test of `bombus serve` (loopback only, bounded in time).

Starts `bombus serve` on the default models (SmolLM2-135M-Instruct for completions and chat, all-MiniLM-L6-v2
for embeddings) unless --url names a running server, then:

1. load: `--clients` concurrent clients for `--duration` seconds, each looping over a random mix of
   streaming and non-streaming chat and completions (different prompts, lengths and sampling settings,
   greedy and sampled) and embedding calls; some streaming clients disconnect mid-stream. Afterwards every
   distinct greedy request is sent again alone and must give the same text; every request must have an
   answer (none lost); the server's memory (RSS) is printed after warm-up and at the end.
   Prints requests/s, generated tokens/s, p50/p99 latency and time to first token.
2. scaling: one stream alone vs `--streams` concurrent streams (aggregate tokens/s; target >= 8x).
3. short behind long: a short request sent while long ones decode finishes in a fraction of their time.

    python benchmarks/serve_load.py                      # the full run: 200 clients, 60 s
    python benchmarks/serve_load.py --clients 20 --duration 10 --streams 8
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

CHAT_MODEL, EMBED_MODEL = "SmolLM2-135M-Instruct", "all-MiniLM-L6-v2"
QUESTIONS = ["What is the capital of France?", "Name three colours.", "Write a haiku about rain.",
             "What is 2 + 2?", "Give me a word that rhymes with cat.", "Why is the sky blue?",
             "Tell me a fun fact about owls.", "Translate 'hello' into Spanish.", "What day comes after Monday?",
             "Describe a cup of tea in one sentence."]
PROMPTS = ["Once upon a time", "The best way to learn a language is", "In 1492,", "def fibonacci(n):",
           "The weather today is", "My favourite food is", "Paris is a city that", "Machine learning is"]


# ---------------------------------------------------------------------------------------------------- the server
def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = Path(__file__).resolve().parent.parent / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, "-m", "bombus", "serve", "--port", str(port), "--max-batch-size",
               str(args.max_batch_size), "--max-queue", "1024", "--max-length", "1024", "--log-level", "warning"]
    for model in args.model or []:
        command += ["--model", model]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    sys.exit("the server did not start in 300 s")


def rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


# ---------------------------------------------------------------------------------------------------- requests
class Result:
    def __init__(self, kind: str, body: dict):
        self.kind, self.body = kind, body
        self.status = 0
        self.text = ""
        self.tokens = 0
        self.latency = 0.0
        self.ttft: float | None = None
        self.disconnected = False
        self.error: str | None = None


def send(url: str, kind: str, body: dict, *, disconnect_after: int | None = None) -> Result:
    """One request; streaming ones are read event by event (TTFT), optionally dropped after some events."""
    result = Result(kind, body)
    path = {"chat": "/v1/chat/completions", "completion": "/v1/completions", "embedding": "/v1/embeddings"}[kind]
    parsed = urlparse(url)
    started = time.monotonic()
    try:
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=600)
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        result.status = response.status
        if response.status != 200:
            result.error = response.read().decode()[:200]
        elif not body.get("stream"):
            answer = json.loads(response.read())
            if kind == "embedding":
                result.tokens = answer["usage"]["prompt_tokens"]
            else:
                choice = answer["choices"][0]
                result.text = choice["message"]["content"] if kind == "chat" else choice["text"]
                result.tokens = answer["usage"]["completion_tokens"]
            result.ttft = time.monotonic() - started
        else:
            events = 0
            for raw in response.fp:
                line = raw.decode()
                if not line.startswith("data: "):
                    continue
                if line.strip() == "data: [DONE]":
                    break
                item = json.loads(line[6:])
                if item.get("usage"):
                    result.tokens = item["usage"]["completion_tokens"]
                if not item.get("choices"):
                    continue
                choice = item["choices"][0]
                piece = (choice["delta"].get("content") or "") if kind == "chat" else choice["text"]
                if piece and result.ttft is None:
                    result.ttft = time.monotonic() - started
                result.text += piece
                events += 1
                if disconnect_after is not None and events >= disconnect_after:
                    result.disconnected = True
                    break
        connection.close()
    except Exception as e:  # noqa: BLE001 - reported as a lost request
        result.error = repr(e)
    result.latency = time.monotonic() - started
    return result


def random_request(rng: random.Random) -> tuple[str, dict, int | None]:
    """A random request: (kind, body, disconnect after N events or None)."""
    roll = rng.random()
    if roll < 0.15:
        texts = [rng.choice(QUESTIONS + PROMPTS) for _ in range(rng.randint(1, 8))]
        return "embedding", {"model": EMBED_MODEL, "input": texts, "encoding_format": "float"}, None
    kind = "chat" if roll < 0.6 else "completion"
    body: dict = {"model": CHAT_MODEL, "max_tokens": rng.choice([8, 16, 32, 64, 128])}
    if kind == "chat":
        body["messages"] = [{"role": "user", "content": rng.choice(QUESTIONS)}]
    else:
        body["prompt"] = rng.choice(PROMPTS)
    if rng.random() < 0.6:
        body["temperature"] = 0
    else:
        body.update(temperature=rng.choice([0.5, 0.8, 1.0]), top_p=rng.choice([0.9, 1.0]), seed=rng.randrange(1000))
    body["stream"] = rng.random() < 0.5
    if body["stream"]:
        body["stream_options"] = {"include_usage": True}
    disconnect = rng.randint(1, 4) if body["stream"] and rng.random() < 0.1 else None
    return kind, body, disconnect


def load(url: str, clients: int, duration: float, seed: int) -> tuple[list[Result], float]:
    results: list[Result] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while time.monotonic() < deadline:
            kind, body, disconnect = random_request(rng)
            result = send(url, kind, body, disconnect_after=disconnect)
            with lock:
                results.append(result)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.monotonic() - started


def _key(body: dict) -> str:
    """A request without its streaming fields: the same request, streamed or not, gives the same text."""
    return json.dumps({k: v for k, v in body.items() if k not in ("stream", "stream_options")}, sort_keys=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ---------------------------------------------------------------------------------------------------- checks
def stream_tokens_per_second(url: str, streams: int, max_tokens: int) -> float:
    body = {"model": CHAT_MODEL, "prompt": "Once upon a time", "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
    results: list[Result] = []
    threads = [threading.Thread(target=lambda: results.append(send(url, "completion", dict(body))))
               for _ in range(streams)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return sum(r.tokens for r in results) / elapsed


def short_behind_long(url: str, long_requests: int, long_tokens: int) -> tuple[float, float]:
    long_body = {"model": CHAT_MODEL, "prompt": "The history of the world, chapter one:", "max_tokens": long_tokens,
                 "temperature": 0, "ignore_eos": True}
    results: list[Result] = []
    threads = [threading.Thread(target=lambda: results.append(send(url, "completion", dict(long_body))))
               for _ in range(long_requests)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    short = send(url, "completion", {"model": CHAT_MODEL, "prompt": "Hi", "max_tokens": 8, "temperature": 0,
                                     "ignore_eos": True})
    for t in threads:
        t.join()
    return short.latency, statistics.median(r.latency for r in results)


# ---------------------------------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running server (default: start one on the default models)")
    p.add_argument("--model", action="append", help="--model for the server started here (default: defaults)")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--streams", type=int, default=32, help="concurrent streams of the scaling check")
    p.add_argument("--stream-tokens", type=int, default=64)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-load", action="store_true", help="only the scaling and short-behind-long checks")
    args = p.parse_args()

    process, url = (None, args.url) if args.url else start_server(args)
    pid = process.pid if process is not None else None
    failures = []
    try:
        send(url, "completion", {"model": CHAT_MODEL, "prompt": "warm up", "max_tokens": 4})
        send(url, "embedding", {"model": EMBED_MODEL, "input": "warm up"})
        print(f"server {url}, RSS after warm-up: {rss_mib(pid) or float('nan'):.0f} MiB")

        if not args.skip_load:
            rss_start = rss_mib(pid)
            results, elapsed = load(url, args.clients, args.duration, args.seed)
            rss_end = rss_mib(pid)
            lost = [r for r in results if r.error is not None and r.status != 503]
            overloaded = sum(r.status == 503 for r in results)
            complete = [r for r in results if r.error is None and not r.disconnected]
            generated = sum(r.tokens for r in complete if r.kind != "embedding")
            latencies = [r.latency for r in complete]
            ttfts = [r.ttft for r in complete if r.ttft is not None and r.body.get("stream")]
            print(f"\nload: {args.clients} clients, {elapsed:.1f} s")
            print("| requests | completed | disconnected | 503 | lost | requests/s | tokens/s | p50 latency | "
                  "p99 latency | p50 TTFT (stream) | p99 TTFT (stream) |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            print(f"| {len(results)} | {len(complete)} | {sum(r.disconnected for r in results)} | {overloaded} | "
                  f"{len(lost)} | {len(complete) / elapsed:.1f} | {generated / elapsed:.1f} | "
                  f"{percentile(latencies, 0.5):.2f} s | {percentile(latencies, 0.99):.2f} s | "
                  f"{percentile(ttfts, 0.5):.2f} s | {percentile(ttfts, 0.99):.2f} s |")
            if lost:
                failures.append(f"{len(lost)} requests lost, e.g. {lost[0].error}")
            # Every distinct greedy request, again alone: the same text.
            greedy: dict[str, Result] = {}
            for r in complete:
                if r.kind != "embedding" and r.body.get("temperature") == 0:
                    key = _key(r.body)
                    greedy.setdefault(key, r)
            mismatched = 0
            for key, r in greedy.items():
                alone = send(url, r.kind, {**json.loads(key), "stream": False})
                mismatched += alone.text != r.text
            same = all(r.text == greedy[_key(r.body)].text for r in complete
                       if r.kind != "embedding" and r.body.get("temperature") == 0)
            print(f"greedy requests checked alone: {len(greedy)} distinct, {mismatched} differ; "
                  f"repeats within the load identical: {same}")
            if mismatched or not same:
                failures.append(f"{mismatched} greedy responses differ from the request alone")
            time.sleep(2)
            print(f"server RSS: {rss_start or float('nan'):.0f} MiB before the load, {rss_end or float('nan'):.0f} "
                  f"MiB right after, {rss_mib(pid) or float('nan'):.0f} MiB 2 s later")

        one = stream_tokens_per_second(url, 1, args.stream_tokens)
        many = stream_tokens_per_second(url, args.streams, args.stream_tokens)
        ratio = many / one
        print(f"\nscaling: 1 stream {one:.1f} tok/s, {args.streams} streams {many:.1f} tok/s aggregate: "
              f"{ratio:.1f}x (target >= 8x)")
        if ratio < 8:
            failures.append(f"{args.streams} streams give only {ratio:.1f}x one stream's tokens/s")
        short, long = short_behind_long(url, 8, 200)
        print(f"short request (8 tokens) behind 8 long ones (200 tokens): {short:.2f} s vs {long:.2f} s "
              f"({short / long:.2f} of the long ones' time)")
        if short > 0.5 * long:
            failures.append("the short request waited for the long ones")
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    print("\nOK" if not failures else "\nFAILED:\n  " + "\n  ".join(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
