"""The CPU suite: bombus, transformers and (when the `bench` extra is installed) CTranslate2, side by side in
one process, on random weights of real shapes, printed as one table.

    .venv/bin/python benchmarks/run_all.py                        # everything (tens of minutes on 2 loaded cores)
    .venv/bin/python benchmarks/run_all.py --quick                # GPT-2 small + RoBERTa, 2 repetitions, no memory
    .venv/bin/python benchmarks/run_all.py --models gpt2 --engines "transformers fp32" "bombus fp32" \\
        --workloads "decode b1" --reps 3 --no-memory

Models: GPT-2 small (124M) and medium (355M) decoders; RoBERTa-base, DistilBERT-base and ALBERT-base encoders.
Each model's random weights are saved once (transformers' save_pretrained; CTranslate2 converts that folder),
so every engine runs the same weights. Engines: transformers fp32 (SDPA), bombus fp32 / int8 / int4
(`load_model(..., quantize=...)`; bf16 only on a CPU with AMX), bombus fp32 / int4 compiled (decoders:
`generate(..., compile=True)`; the first calls compile, timed and printed apart), CTranslate2 float32 / int8
(int8_float32).

Workloads (each cell: median (min-max) of `--reps` repetitions interleaved round robin over the engines):
  decode b1, decode b8   greedy tokens/s of generate(prompt 32, 128 new tokens, EOS off): batch x new / wall time
  first token            ms of generate(prompt 32, 1 new token) at batch 1 (time to first token)
  prefill 128, 512       ms of generate(1 new token) on a 1 x 128 / 1 x 512 prompt (the prompt's forward pass)
  encode 8x128           sequences/s of the encoder's forward pass on 8 x 128 tokens
`vs tf` divides by transformers fp32 (higher is better; for ms columns the inverse, so > 1 is faster).
`roofline` is the fraction of this machine's ceiling, measured at the start: decoding reads every matmul weight
once per step (time >= weight bytes / read bandwidth, and >= 2 x params x batch / matmul rate), prefill and
encoding do their FLOPs (counted by torch's FlopCounterMode on the transformers model) at the matmul rate of the
engine's arithmetic (fp32, bf16 for bombus int4, int8 for the int8 engines).
`agree` (decode rows): how many leading tokens equal transformers fp32's (the shortest row of the batch).
`peak MB` (unless --no-memory): each (model, engine) runs once more in a fresh process, which reports its peak
resident memory while loading (VmHWM minus the resident size before loading), its resident size after loading,
and each workload's own peak (VmHWM after the call minus VmRSS before it, after trimming freed heap).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import call_around, ceilings, cell, describe_ceilings, has_amx, interleaved, load_average, machine, \
    reset_peak, status_bytes  # noqa: E402

PROMPT, NEW = 32, 128
DECODERS = {"gpt2": dict(n_embd=768, n_layer=12, n_head=12), "gpt2-medium": dict(n_embd=1024, n_layer=24, n_head=16)}
ENCODERS = {
    "roberta-base": ("RobertaConfig", "RobertaModel", dict(vocab_size=50265, max_position_embeddings=514,
                                                           type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                                                           eos_token_id=2)),
    "distilbert-base": ("DistilBertConfig", "DistilBertModel", {}),
    "albert-base": ("AlbertConfig", "AlbertModel", dict(hidden_size=768, num_attention_heads=12,
                                                        intermediate_size=3072, embedding_size=128)),
}
DECODE_WORKLOADS = ["decode b1", "decode b8", "first token", "prefill 128", "prefill 512"]
ENCODE_WORKLOADS = ["encode 8x128"]
ENGINES = ["transformers fp32", "bombus fp32", "bombus fp32 compiled", "bombus bf16", "bombus int8", "bombus int4",
           "bombus int4 compiled", "ctranslate2 float32", "ctranslate2 int8"]
# bytes per weight each engine reads while decoding, and the matmul rate that bounds its compute
ARITHMETIC = {"fp32": (4, "fp32"), "float32": (4, "fp32"), "bf16": (2, "bf16"), "int8": (1, "int8"),
              "int4": (0.5, "bf16")}


# ---- models on disk -------------------------------------------------------------------------------------------


def save_model(name: str, folder: Path) -> dict:
    """Save random weights of `name`'s shape (and a word-level tokenizer, which CTranslate2's converter needs)
    into `folder`; returns the model's facts for the rooflines."""
    import tokenizers
    import transformers
    from tokenizers.models import WordLevel

    torch.manual_seed(0)
    if name in DECODERS:
        config = transformers.GPT2Config(**DECODERS[name])
        model = transformers.GPT2LMHeadModel(config)
    else:
        config_class, model_class, options = ENCODERS[name]
        # position_embedding_type: transformers 5 dropped it from BertConfig; CTranslate2's converter reads it
        config = getattr(transformers, config_class)(position_embedding_type="absolute", **options)
        model = getattr(transformers, model_class)(config)
    model.save_pretrained(folder)
    vocab = {f"t{i}": i for i in range(config.vocab_size)}
    special = dict(unk_token="t0", bos_token="t0", eos_token=f"t{config.vocab_size - 1}") if name in DECODERS else \
        dict(unk_token="t0", cls_token="t1", sep_token="t2", pad_token="t3", mask_token="t4")
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizers.Tokenizer(WordLevel(vocab, unk_token="t0")),
                                               **special)
    tok.save_pretrained(folder)
    facts = {"vocab_size": config.vocab_size, "decoder": name in DECODERS}
    if name in DECODERS:  # every matmul weight a decode step reads: the blocks' and the (tied) LM head's
        facts["matmul_params"] = sum(p.numel() for n, p in model.named_parameters()
                                     if p.dim() == 2 and "wpe" not in n)
        facts["flops"] = {w: count_flops(model, 1, n) for w, n in (("prefill 128", 128), ("prefill 512", 512))}
    else:
        facts["flops"] = {"encode 8x128": count_flops(model, 8, 128)}
    return facts


def count_flops(model, batch: int, length: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    ids = torch.randint(5, 1000, (batch, length))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        if hasattr(model, "lm_head"):
            model(input_ids=ids, logits_to_keep=1)  # as generate's prefill: logits of the last position only
        else:
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return counter.get_total_flops()


def convert_ct2(folder: Path) -> Path | None:
    try:
        import ctranslate2
    except ImportError:
        return None
    target = folder.with_name(folder.name + "-ct2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ctranslate2.converters.TransformersConverter(str(folder)).convert(str(target), force=True)
        except ValueError as e:  # a family CTranslate2 does not support (ALBERT)
            print(f"  {folder.name}: CTranslate2 skipped: {str(e)[:90]}", flush=True)
            return None
    return target


# ---- engines --------------------------------------------------------------------------------------------------


@dataclass
class Engine:
    name: str
    generate: Callable[[torch.Tensor, int], list[list[int]]] | None = None  # (ids [B, T], new) -> new ids per row
    encode: Callable[[torch.Tensor], object] | None = None  # ids [B, T] -> hidden states
    tensors: list[torch.Tensor] = field(default_factory=list)  # the weights (torch engines)
    # (enter, exit), untimed, around each of its calls: CTranslate2 objects exist only during their own turn
    around: tuple[Callable[[], None], Callable[[], None]] | None = None


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


def build_engine(name: str, folder: Path, decoder: bool, threads: int) -> Engine:
    """`name`'s model loaded from `folder` (CTranslate2: its converted twin); raises ImportError or a bombus
    ConfigError where the engine does not exist here."""
    family, kind = name.split(" ", 1)
    if family == "transformers":
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        if decoder:
            model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
            return Engine(name, tensors=weights(model), generate=lambda ids, n: model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                eos_token_id=None, pad_token_id=0)[:, ids.shape[1]:].tolist())
        model = transformers.AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
        return Engine(name, tensors=weights(model),
                      encode=lambda ids: model(input_ids=ids, attention_mask=torch.ones_like(ids)))
    if family == "bombus":
        import bombus

        compiled = kind.endswith(" compiled")  # generate(compile=True): the decode step through torch.compile
        kind = kind.removesuffix(" compiled")
        if compiled and not decoder:
            raise ImportError("compile=True is a generate option: encoders run eagerly")
        if kind == "bf16" and not has_amx():
            raise ImportError("bf16 pays only on a CPU with AMX; this one has none")
        options = dict(dtype=torch.bfloat16) if kind == "bf16" else \
            dict(quantize=kind) if kind in ("int8", "int4") else {}
        if decoder:
            model = bombus.load_model(folder, **options)
            engine = Engine(name, tensors=weights(model), generate=lambda ids, n: model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, eos_token_id=None, pad_token_id=0,
                compile=compiled)[:, ids.shape[1]:].tolist())
            if compiled:  # compile the decode steps of the decode workloads now, and say how long that took
                times = []
                for batch in (1, 8):
                    start = time.perf_counter()
                    engine.generate(torch.randint(5, 1000, (batch, PROMPT)), NEW)
                    times.append(f"b{batch} {time.perf_counter() - start:.1f} s")
                print(f"  {name}: compiling its decode steps (first calls): {', '.join(times)}", flush=True)
            return engine
        model = bombus.load_model(folder, architecture="base", **options)
        return Engine(name, tensors=weights(model),
                      encode=lambda ids: model(input_ids=ids, attention_mask=torch.ones_like(ids)))
    import ctranslate2

    compute = {"float32": "float32", "int8": "int8_float32"}[kind]
    target = folder.with_name(folder.name + "-ct2")
    # A live CTranslate2 Generator/Encoder slows every other engine of the process, even idle (measured: bombus
    # fp32 GPT-2 b1 63 -> 52 tok/s, int4 218 -> 127, back once it is deleted; unloading its model is not
    # enough). So it is built for its own turn and deleted after it, untimed (`Engine.around`).
    live: list = []
    make = (lambda: ctranslate2.Generator(str(target), device="cpu", compute_type=compute, intra_threads=threads)) \
        if decoder else \
        (lambda: ctranslate2.Encoder(str(target), device="cpu", compute_type=compute, intra_threads=threads))

    def enter() -> None:
        live.append(make())
        if decoder:  # a small untimed call: the first after loading pays for allocations
            live[0].generate_batch([["t5", "t6"]], max_length=2, sampling_topk=1)
        else:
            live[0].forward_batch([[5, 6, 7]])

    def leave() -> None:
        live.clear()
        gc.collect()

    if decoder:
        def generate(ids: torch.Tensor, n: int) -> list[list[int]]:
            tokens = [[f"t{i}" for i in row] for row in ids.tolist()]
            results = live[0].generate_batch(tokens, max_length=n, min_length=n, include_prompt_in_result=False,
                                             sampling_topk=1)
            return [r.sequences_ids[0] for r in results]

        return Engine(name, generate=generate, around=(enter, leave))
    return Engine(name, encode=lambda ids: live[0].forward_batch(ids.tolist()), around=(enter, leave))


def workload(engine: Engine, name: str) -> tuple[Callable[[], object], float]:
    """(the call, the units it produces: tokens or sequences; 0 for a latency)."""
    generator = torch.Generator().manual_seed(1)
    if name.startswith("decode"):
        batch = int(name.split("b")[-1])
        ids = torch.randint(5, 50000, (batch, PROMPT), generator=generator)
        return (lambda: engine.generate(ids, NEW)), batch * NEW
    if name in ("first token", "prefill 128", "prefill 512"):
        length = PROMPT if name == "first token" else int(name.split()[-1])
        ids = torch.randint(5, 50000, (1, length), generator=generator)
        return (lambda: engine.generate(ids, 1)), 0
    batch, length = (int(x) for x in name.split()[-1].split("x"))
    ids = torch.randint(5, 30000, (batch, length), generator=generator)
    return (lambda: engine.encode(ids)), batch


def agreement(rows: list[list[int]], reference: list[list[int]]) -> int:
    def prefix(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    return min(prefix(a, b) for a, b in zip(rows, reference))


# ---- rooflines ------------------------------------------------------------------------------------------------


def roofline(engine: str, work: str, facts: dict, machine_rates: dict) -> float | None:
    """The best this machine allows: tokens/s for decoding, seconds for latencies, sequences/s for encoding."""
    kind = engine.split(" ")[1]
    bytes_per_weight, arithmetic = ARITHMETIC[kind]
    rate = machine_rates[f"{arithmetic}_flop_s"]
    if work.startswith("decode"):
        batch = int(work.split("b")[-1])
        params = facts["matmul_params"]
        step = max(params * bytes_per_weight / machine_rates["read_bytes_s"], 2 * params * batch / rate)
        return batch / step
    if work == "first token":
        return None
    flops = facts["flops"][work]
    if work.startswith("encode"):
        return 8 / (flops / rate)
    return flops / rate


# ---- memory in a fresh process -------------------------------------------------------------------------------


def memory_child(engine_name: str, folder: str, decoder: bool, workloads: list[str], threads: int) -> None:
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    # import the engine's libraries first, so that loading is measured alone
    import transformers  # noqa: F401

    import bombus  # noqa: F401
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        pass
    base = reset_peak()
    engine = build_engine(engine_name, Path(folder), decoder, threads)
    if engine.around:
        engine.around[0]()  # CTranslate2: its model is loaded here
    with torch.no_grad():
        for tensor in engine.tensors:  # page in memory-mapped weights (transformers): they are part of loading
            tensor.sum()
    result = {"load_peak_mb": (status_bytes("VmHWM") - base) / 2**20}
    result["resident_mb"] = (reset_peak() - base) / 2**20
    with torch.no_grad():
        for work in workloads:
            call, _ = workload(engine, work)
            start = reset_peak()
            call()
            result[work] = (status_bytes("VmHWM") - start) / 2**20
    print(json.dumps(result))


def memory(engine: str, folder: Path, decoder: bool, workloads: list[str], threads: int) -> dict:
    command = [sys.executable, __file__, "--_memory", engine, str(folder), "1" if decoder else "0",
               "--threads", str(threads), "--new", str(NEW), "--workloads", *workloads]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the suite ------------------------------------------------------------------------------------------------


def run_model(name: str, args, rates: dict, root: Path, rows: list[list[str]], loads: list[list[str]]) -> None:
    decoder = name in DECODERS
    folder = root / name
    facts = save_model(name, folder)
    have_ct2 = convert_ct2(folder) is not None
    engines: dict[str, Engine] = {}
    for engine in args.engines:
        if engine.startswith("ctranslate2") and not have_ct2:
            continue
        try:
            with torch.no_grad():
                engines[engine] = build_engine(engine, folder, decoder, args.threads)
        except Exception as e:  # not available here (no AMX, no CTranslate2 support for the model, ...)
            print(f"  {name}: {engine} skipped: {type(e).__name__}: {str(e).splitlines()[0][:150]}", flush=True)
    works = [w for w in args.workloads if w in (DECODE_WORKLOADS if decoder else ENCODE_WORKLOADS)]
    weights_mb = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20
    mem = {}
    if args.memory:
        for engine in engines:
            mem[engine] = memory(engine, folder, decoder, works, args.threads)
            m = mem[engine]
            loads.append([name, engine, f"{weights_mb:.0f}",
                          f"{m['load_peak_mb']:.0f}" if "load_peak_mb" in m else m.get("error", "?")[:60],
                          f"{m['load_peak_mb'] / weights_mb:.2f}x" if "load_peak_mb" in m else "",
                          f"{m['resident_mb']:.0f}" if "resident_mb" in m else "",
                          f"{m['resident_mb'] / weights_mb:.2f}x" if "resident_mb" in m else ""])
    for work in works:
        calls = {}
        units = 0.0
        for engine_name, engine in engines.items():
            calls[engine_name], units = workload(engine, work)
        around = {e: engines[e].around for e in calls if engines[e].around}
        with torch.no_grad():
            # the untimed first calls: tokens to compare, and warm-up
            tokens = {e: call_around(fn, around.get(e)) for e, fn in calls.items()} if work.startswith("decode") else {}
            seconds = interleaved(calls, args.reps, warmup=False, around=around)
        reference = seconds.get("transformers fp32")
        for engine_name, values in seconds.items():
            if units:  # a rate
                per = [units / s for s in values]
                shown, fmt = per, ".1f"
                ratio = statistics.median(per) / (units / statistics.median(reference)) if reference else None
            else:  # a latency
                shown, fmt = [1000 * s for s in values], ".1f"
                ratio = statistics.median(reference) / statistics.median(values) if reference else None
            best = roofline(engine_name, work, facts, rates)
            fraction = "" if best is None else \
                f"{(statistics.median(per) / best) if units else (best / statistics.median(values)):.0%}"
            agree = ""
            if tokens and "transformers fp32" in tokens:
                agree = f"{agreement(tokens[engine_name], tokens['transformers fp32'])}/{NEW}"
            peak = mem.get(engine_name, {}).get(work)
            rows.append([name, work, engine_name, cell(shown, fmt), "tok/s" if work.startswith("decode") else
                         "seq/s" if units else "ms", f"{ratio:.2f}x" if ratio else "", fraction, agree,
                         f"{peak:.0f}" if peak is not None else ""])
        for row in rows[-len(seconds):]:  # as they come, in case a long run is cut short
            print("  | " + " | ".join(row) + " |", flush=True)
        print(f"  {name} {work} done ({load_average()})", flush=True)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)] if rows else \
        [len(h) for h in header]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main() -> None:
    global NEW
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[*DECODERS, *ENCODERS], choices=[*DECODERS, *ENCODERS])
    parser.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    parser.add_argument("--workloads", nargs="+", default=DECODE_WORKLOADS + ENCODE_WORKLOADS,
                        choices=DECODE_WORKLOADS + ENCODE_WORKLOADS)
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per cell (default 5)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--new", type=int, default=NEW, help=f"new tokens of the decode rows (default {NEW})")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the subprocess memory runs")
    parser.add_argument("--quick", action="store_true", help="GPT-2 small and RoBERTa-base, 2 reps, no memory")
    parser.add_argument("--_memory", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    NEW = args.new
    if args._memory:
        engine, folder, decoder = args._memory
        return memory_child(engine, folder, decoder == "1", args.workloads, args.threads)
    if args.quick:
        args.models, args.reps, args.memory = ["gpt2", "roberta-base"], 2, False

    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    warnings.simplefilter("ignore")
    try:
        import ctranslate2

        ct2 = f"ctranslate2 {ctranslate2.__version__}"
    except ImportError:
        ct2 = "CTranslate2 not installed (pip install -e .[bench])"
    started = time.strftime("%Y-%m-%d %H:%M")
    print(machine())
    rates = ceilings()
    print(describe_ceilings(rates))
    print(f"transformers {transformers.__version__}; {ct2}; {started}; threads {args.threads}; "
          f"{args.reps} interleaved repetitions\n", flush=True)
    rows: list[list[str]] = []
    loads: list[list[str]] = []
    with tempfile.TemporaryDirectory() as root:
        for name in args.models:
            run_model(name, args, rates, Path(root), rows, loads)
    print()
    print(machine())
    print(describe_ceilings(rates))
    print(f"{started}; prompt {PROMPT}, {NEW} new tokens; {args.reps} interleaved repetitions: median (min-max); "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}\n")
    print(markdown(["model", "workload", "engine", "median (min-max)", "unit", "vs tf", "roofline", "agree",
                    "peak MB"], rows))
    if loads:
        print("\nLoading (fresh process each): peak resident memory while loading and resident size after, "
              "vs the checkpoint's fp32 bytes\n")
        print(markdown(["model", "engine", "weights MB", "load peak MB", "/ weights", "resident MB", "/ weights"],
                       loads))


if __name__ == "__main__":
    main()
