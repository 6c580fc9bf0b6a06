"""bombus vs transformers on a CUDA GPU, side by side in one process, the same random weights for both.

Sections (`--sections`, default all):
  decode   GPT-2 small bf16 greedy decoding, prompt 32 + 128 new tokens, batch 1/8/64: tokens/s of transformers
           (SDPA, its default dynamic cache), bombus step by step (`cuda_graph=False`), bombus over a captured
           CUDA graph (the default on CUDA) and over a captured graph of the step compiled by torch.compile
           (`compile=True`; its first call, which compiles, is timed apart); whether bombus' paths agree.
  encoder  RoBERTa-base bf16 encoder forward, 64 sequences x 128 tokens: sequences/s (SDPA both).
  train    the seed's GPT-2 page table: gpt2-large fp16, one training step (forward + backward, as the seed
           measured it), seconds per batch and peak MB, eager and SDPA attention, batch x sequence grid.
  infer    the seed's inference table: gpt2-large fp16 greedy generation of `--new-large` tokens after a prompt of
           the given length, milliseconds per new token and peak MB: eager, SDPA, and bombus over its CUDA graph
           (with `--infer-compile`, also over a graph of its compiled step).
Repetitions are interleaved across engines (so that noise hits all alike); cells are medians. Peak MB is what
one engine alone would reach: its weights (as in the seed's table) plus the most allocated during the call above
what was allocated before it (other engines stay loaded); for bombus' graph, plus its captured steps' caches. Weights: transformers
builds the model (its own initialisation, on the GPU), saves it, and bombus loads that folder.

Usage: python benchmarks/gpu.py [--sections decode encoder train infer] [--reps 3] [--batches 1 2 4]
                                [--train-seqs 128 256 512 1024] [--infer-seqs 128 256 512 768] [--new-large 64]
       python benchmarks/gpu.py --smoke   # every code path on the CPU with tiny shapes (no figures worth reading)
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import bombus  # noqa: E402

DEVICE = "cuda"  # "cpu" with --smoke
SHAPES = {  # transformers config options of each benchmarked model; --smoke shrinks them
    "gpt2-small": {},
    "roberta-base": dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1),
    "gpt2-large": dict(n_embd=1280, n_layer=36, n_head=20),
}
TINY = dict(n_embd=64, n_layer=2, n_head=4, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128)


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def peak_of(fn, model=None, graphs_too: bool = False) -> tuple[float, float]:
    """(seconds, peak MB of the call as one engine alone would see it; 0 off CUDA): the most allocated during
    the call above what was allocated before (other engines' weights, retained graph caches), plus `model`'s
    weights and, with `graphs_too`, the static caches and buffers of its captured decode steps."""
    gc.collect()
    if DEVICE != "cuda":
        return timed(fn), 0.0
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    seconds = timed(fn)
    own = 0 if model is None else sum(t.numel() * t.element_size() for t in model.parameters())
    if graphs_too:
        own += graph_bytes(model)
    return seconds, (torch.cuda.max_memory_allocated() - before + own) / 2**20


def graph_bytes(model) -> int:
    """Bytes held by the model's captured decode steps (caches and static buffers)."""
    from bombus.generation import graphs

    owner = graphs._RUNNERS.get(model)
    total = 0
    for steps in (owner.steps.values() if owner is not None else ()):
        for step in steps:
            tensors = step.cache.keys + step.cache.values + [step.cache.mask, step.tokens, step.positions,
                                                             step.unfinished, step.is_eos, step.logits]
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def interleaved(engines: dict, reps: int, first_seconds: dict | None = None) -> dict[str, list]:
    """Run each engine once to warm up (its seconds into `first_seconds`), then `reps` rounds of all engines;
    returns their results."""
    results: dict[str, list] = {name: [] for name in engines}
    for name, fn in engines.items():
        seconds = timed(fn)
        if first_seconds is not None:
            first_seconds[name] = seconds
    for _ in range(reps):
        for name, fn in engines.items():
            results[name].append(fn())
    return results


def median(values) -> float:
    return statistics.median(values)


def save_reference(model, folder: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(folder)
    return folder


def hf_model(cls, folder, dtype, attention):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls.from_pretrained(folder, dtype=dtype, attn_implementation=attention).to(DEVICE).eval()


def table(title: str, header: list[str], rows: list[list]) -> str:
    lines = [f"\n### {title}", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# ---- sections ------------------------------------------------------------------------------------------------


def decode_section(args, tmp: Path) -> str:
    import transformers

    config = transformers.GPT2Config(**SHAPES["gpt2-small"])
    with torch.device(DEVICE):
        ref = transformers.GPT2LMHeadModel(config)
    folder = save_reference(ref.to(torch.bfloat16), tmp / "gpt2-small")
    del ref
    theirs = hf_model(transformers.GPT2LMHeadModel, folder, torch.bfloat16, "sdpa")
    ours = bombus.load_model(folder, device=DEVICE, dtype=torch.bfloat16)
    prompt, new = 32, 128 if DEVICE == "cuda" else 8
    rows = []
    for batch in args.decode_batches:
        ids = torch.randint(0, config.vocab_size, (batch, prompt), device=DEVICE)
        mask = torch.ones_like(ids)
        outs = {}

        def run(name, fn):
            def go():
                seconds = timed(lambda: outs.__setitem__(name, fn()))
                return batch * new / seconds
            return go

        options = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
        first_seconds: dict = {}
        with torch.no_grad():
            res = interleaved({
                "transformers": run("transformers", lambda: theirs.generate(ids, attention_mask=mask, **options)),
                "bombus steps": run("steps", lambda: ours.generate(ids, attention_mask=mask, cuda_graph=False,
                                                                   eos_token_id=None, max_new_tokens=new, pad_token_id=0)),
                "bombus graph": run("graph", lambda: ours.generate(ids, attention_mask=mask, eos_token_id=None,
                                                                   max_new_tokens=new, pad_token_id=0)),
                "bombus compiled": run("compiled", lambda: ours.generate(
                    ids, attention_mask=mask, eos_token_id=None, max_new_tokens=new, pad_token_id=0, compile=True)),
            }, args.reps, first_seconds)
        same = torch.equal(outs["steps"], outs["graph"])
        agree = {k: float((outs[k][:, prompt:] == outs["transformers"][:, prompt:]).float().mean())
                 for k in ("graph", "compiled")}
        t, s, g, c = (median(res[k]) for k in ("transformers", "bombus steps", "bombus graph", "bombus compiled"))
        rows.append([batch, f"{t:,.0f}", f"{s:,.0f}", f"{g:,.0f}", f"{c:,.0f}", f"{max(g, c) / t:.1f}x",
                     "yes" if same else "NO", f"{agree['graph']:.0%} / {agree['compiled']:.0%}",
                     f"{first_seconds['bombus compiled']:.0f}"])
    del theirs, ours
    return table(f"GPT-2 small bf16 greedy decoding, prompt 32 + {new} new (tokens/s)",
                 ["batch", "transformers SDPA", "bombus step by step", "bombus CUDA graph",
                  "bombus compiled + graph", "best vs transformers", "graph = steps",
                  "same tokens as transformers (graph / compiled)", "first call s (compiles)"], rows)


def encoder_section(args, tmp: Path) -> str:
    import transformers

    config = transformers.RobertaConfig(**SHAPES["roberta-base"])
    with torch.device(DEVICE):
        ref = transformers.RobertaModel(config, add_pooling_layer=False)
    folder = save_reference(ref.to(torch.bfloat16), tmp / "roberta-base")
    del ref
    theirs = hf_model(transformers.RobertaModel, folder, torch.bfloat16, "sdpa")
    ours = bombus.load_model(folder, device=DEVICE, dtype=torch.bfloat16)
    batch, seq = 64, 128
    ids = torch.randint(3, config.vocab_size, (batch, seq), device=DEVICE)
    mask = torch.ones_like(ids)
    mask[1::2, seq // 2:] = 0  # half the rows padded: the usual encoder batch
    outs = {}

    def run(name, model):
        def go():
            def work():
                out = model(input_ids=ids, attention_mask=mask)
                outs[name] = out["hidden_state"] if name == "bombus" else out.last_hidden_state
            seconds, peak = peak_of(work, model)
            return batch / seconds, peak
        return go

    with torch.no_grad():
        res = interleaved({"transformers": run("transformers", theirs), "bombus": run("bombus", ours)}, args.reps * 3)
    keep = mask.bool()
    err = float((outs["bombus"][keep].float() - outs["transformers"][keep].float()).norm()
                / outs["transformers"][keep].float().norm())
    t, b = (median([r[0] for r in res[k]]) for k in ("transformers", "bombus"))
    pt, pb = (max(r[1] for r in res[k]) for k in ("transformers", "bombus"))
    del theirs, ours
    return table("RoBERTa-base bf16 encoder, 64 x 128 tokens (half the rows padded)",
                 ["engine", "sequences/s", "peak MB", "relative difference of hidden states"],
                 [["transformers SDPA", f"{t:,.0f}", f"{pt:,.0f}", ""],
                  ["bombus SDPA", f"{b:,.0f}", f"{pb:,.0f}", f"{err:.1e}"]])


def large_pair(tmp: Path):
    import transformers

    folder = tmp / "gpt2-large"
    if not folder.exists():
        config = transformers.GPT2Config(**SHAPES["gpt2-large"])
        with torch.device(DEVICE):
            ref = transformers.GPT2LMHeadModel(config)
        save_reference(ref.to(torch.float16), folder)
        del ref
        torch.cuda.empty_cache()
    return folder


def large_references(folder: Path) -> dict:
    """transformers' gpt2-large in float16, eager and SDPA attention."""
    import transformers

    return {f"transformers {name}": hf_model(transformers.GPT2LMHeadModel, folder, torch.float16, kind)
            for name, kind in (("eager", "eager"), ("SDPA", "sdpa"))}


def train_section(args, tmp: Path) -> str:
    folder = large_pair(tmp)
    engines = large_references(folder)
    ours = bombus.load_model(folder, device=DEVICE, dtype=torch.float16)
    rows = []
    for batch in args.batches:
        for seq in args.train_seqs:
            ids = torch.randint(0, 50257, (batch, seq), device=DEVICE)

            def step(model, attention=None):
                def go():
                    if attention is not None:
                        model.set_attention(attention)
                    model.train()

                    def work():
                        model(input_ids=ids, labels=ids).loss.backward()
                    try:
                        result = peak_of(work, model)
                    except torch.OutOfMemoryError:
                        result = (float("nan"), float("nan"))
                    model.zero_grad(set_to_none=True)
                    return result
                return go

            res = interleaved({**{k: step(m) for k, m in engines.items()},
                               "bombus eager": step(ours, "eager"), "bombus SDPA": step(ours, "sdpa")}, args.reps)
            cells = {k: (median([r[0] for r in v]), max(r[1] for r in v)) for k, v in res.items()}
            rows.append([batch, seq] + [f"{cells[k][0]:.3f}" for k in cells] + [f"{cells[k][1]:,.0f}" for k in cells])
            print(rows[-1], flush=True)
    names = list(cells)
    for m in list(engines.values()) + [ours]:
        m.eval()
    del engines, ours
    gc.collect()
    torch.cuda.empty_cache()
    return table("gpt2-large fp16 training step (forward + backward): seconds per batch, then peak MB",
                 ["batch", "seq"] + [f"{n} s" for n in names] + [f"{n} MB" for n in names], rows)


def infer_section(args, tmp: Path) -> str:
    from bombus.generation import graphs

    folder = large_pair(tmp)
    theirs = large_references(folder)
    ours = bombus.load_model(folder, device=DEVICE, dtype=torch.float16)
    new = args.new_large
    rows = []
    for batch in args.batches:
        for seq in args.infer_seqs:
            ids = torch.randint(0, 50257, (batch, seq), device=DEVICE)
            mask = torch.ones_like(ids)

            def hf(model):
                def go():
                    seconds, peak = peak_of(lambda: model.generate(
                        ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                        pad_token_id=0), model)
                    return 1000 * seconds / new, peak
                return go

            def ours_with(attention, graph, compile=False):
                def go():
                    ours.set_attention(attention)
                    seconds, peak = peak_of(lambda: ours.generate(
                        ids, attention_mask=mask, max_new_tokens=new, eos_token_id=None, pad_token_id=0,
                        cuda_graph=graph, compile=compile), ours, graphs_too=graph)
                    return 1000 * seconds / new, peak
                return go

            graphs.release(ours)  # each grid cell holds the captured step (and cache) of its own buckets only
            compiled = {"bombus compiled graph": ours_with("sdpa", True, True)} if args.infer_compile else {}
            with torch.no_grad():
                res = interleaved({**{k: hf(m) for k, m in theirs.items()},
                                   "bombus eager": ours_with("eager", False), "bombus SDPA": ours_with("sdpa", False),
                                   "bombus graph": ours_with("sdpa", True), **compiled}, args.reps)
            cells = {k: (median([r[0] for r in v]), max(r[1] for r in v)) for k, v in res.items()}
            rows.append([batch, seq] + [f"{cells[k][0]:.2f}" for k in cells] + [f"{cells[k][1]:,.0f}" for k in cells])
            print(rows[-1], flush=True)
    names = list(cells)
    return table(f"gpt2-large fp16 greedy generation ({new} new tokens after the prompt): ms per token, then peak MB",
                 ["batch", "prompt"] + [f"{n} ms" for n in names] + [f"{n} MB" for n in names], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", nargs="+", default=["decode", "encoder", "train", "infer"],
                        choices=["decode", "encoder", "train", "infer"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--decode-batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--train-seqs", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--infer-seqs", type=int, nargs="+", default=[128, 256, 512, 768])
    parser.add_argument("--new-large", type=int, default=64)
    parser.add_argument("--infer-compile", action="store_true",
                        help="infer: also bombus over a captured graph of the compiled step (compile=True)")
    parser.add_argument("--out", help="also write the tables to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: checks the script, not speed")
    args = parser.parse_args()
    global DEVICE
    if args.smoke:
        DEVICE = "cpu"
        for shape in SHAPES.values():
            shape.update(TINY)
        args.reps, args.decode_batches, args.batches, args.new_large = 1, [1, 3], [1], 4
        args.train_seqs, args.infer_seqs = [16], [16]
    elif not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA GPU (or --smoke to check the script on the CPU)")
    import transformers

    torch.manual_seed(0)
    where = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU (smoke run)"
    head = (f"GPU: {where}; torch {torch.__version__}; transformers {transformers.__version__}; "
            f"medians of {args.reps} interleaved repetitions after a warm-up")
    print(head, flush=True)
    texts = [head]
    sections = {"decode": decode_section, "encoder": encoder_section, "train": train_section, "infer": infer_section}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sections:
            started = time.perf_counter()
            texts.append(sections[name](args, Path(tmp)))
            print(f"({name}: {time.perf_counter() - started:.0f} s)", flush=True)
            gc.collect()
            torch.cuda.empty_cache()
            if args.out:
                Path(args.out).write_text("\n".join(texts) + "\n")


if __name__ == "__main__":
    main()
