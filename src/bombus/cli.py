"""The `bombus` command line: `bombus <command> [options]` (also `python -m bombus`).

Each command is a function in `COMMANDS` that adds its subparser and sets `run` (a function of the parsed
arguments returning an exit status); add a command by appending one. `main` maps every `BombusError` to a
one-line message on stderr and exit status 1; argparse reports bad arguments with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .cli_tasks import _positive_int  # one definition of the argument type for every command
from .errors import BombusError, TrainingError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: `sys.argv[1:]`); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except BombusError as e:
        print(f"bombus {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bombus {args.command}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bombus", description="Pretrained transformer language models.")
    commands = parser.add_subparsers(dest="command", metavar="<command>")
    for add in COMMANDS:
        add(commands)
    return parser


# -- bombus train -------------------------------------------------------------------------------------------


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _columns(text: str) -> dict[str, str]:
    columns = {}
    for part in text.split(","):
        name, sep, column = part.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=COLUMN[,NAME=COLUMN...], got {text!r}")
        columns[name.strip()] = column.strip()
    return columns


def add_train(commands) -> None:
    from .training import TASKS

    p = commands.add_parser(
        "train", help="fine-tune or train a model on a JSONL/JSON/CSV/TSV file",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a model for a task on a file of rows (see `bombus.train` for columns and options). "
                    "The final model and tokenizer are saved in --output; checkpoints in --output/checkpoint-<step>.")
    p.add_argument("--task", required=True, choices=list(TASKS), help="what to train")
    p.add_argument("--model", required=True, help="a model folder or hub repo id, or a spec JSON file "
                   "(config.json keys or spec option names, with model_type) to build a new model from scratch")
    p.add_argument("--tokenizer", help="tokenizer folder or hub repo id (default: the model's; for a spec JSON "
                   "the folder it is in)")
    p.add_argument("--data", required=True, help="training rows: .jsonl, .json, .csv or .tsv")
    p.add_argument("--eval-data", help="evaluation rows (same format)")
    p.add_argument("--output", required=True, help="folder for the trained model and checkpoints")
    p.add_argument("--steps", type=_positive_int, help="optimizer steps (default: --epochs over the data)")
    p.add_argument("--epochs", type=_positive_int, default=1)
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--learning-rate", "--lr", type=float, default=5e-5)
    p.add_argument("--weight-decay", type=_non_negative, default=0.01)
    p.add_argument("--warmup", type=_non_negative, default=0, help="warm-up steps, or a fraction (< 1) of all steps")
    p.add_argument("--gradient-accumulation", type=_positive_int, default=1, help="batches per optimizer step")
    p.add_argument("--max-grad-norm", type=_non_negative, default=1.0, help="clip gradients (0: off)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=_positive_int, help="evaluate every N steps (default: at the end)")
    p.add_argument("--checkpoint-every", type=_positive_int, help="write a checkpoint every N steps")
    p.add_argument("--keep-checkpoints", type=_positive_int, help="keep only the newest N checkpoints")
    p.add_argument("--resume", nargs="?", const=True, metavar="CHECKPOINT",
                   help="resume from a checkpoint folder (default: the newest in --output)")
    p.add_argument("--patience", type=_positive_int, help="early stop after N evaluations without improvement")
    p.add_argument("--metric", default="loss", help="the evaluation metric early stopping watches")
    p.add_argument("--max-length", type=_positive_int, help="tokens per example (default: the model's limit)")
    p.add_argument("--num-labels", type=_positive_int, help="classes (classify, tag; default: from the data)")
    p.add_argument("--columns", type=_columns, help="rename columns, e.g. text=sentence,label=sentiment")
    p.add_argument("--no-pack", action="store_true", help="causal-lm: one example per row instead of packed blocks")
    p.add_argument("--no-shuffle", action="store_true")
    p.add_argument("--mlm-probability", type=float, default=0.15)
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.add_argument("--progress", choices=["bar", "lines", "none"], default="bar")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from . import load_tokenizer
    from .loading import build_model, load_model, load_spec
    from .models import family
    from .spec import configure
    from .training import read_rows, train
    from .training.data import label_values
    from .training.tasks import architecture_for

    source = Path(args.model)
    from_spec = source.suffix == ".json" and source.is_file()
    tokenizer = load_tokenizer(args.tokenizer or (source.parent if from_spec else args.model))
    rows = read_rows(args.data) + (read_rows(args.eval_data) if args.eval_data else [])
    overrides: dict[str, Any] = {}  # spec options for the model to build or load
    if from_spec:
        config = _read_spec_json(source)
        architecture = architecture_for(args.task, family(config["model_type"]).hf_classes)
        spec = _spec_from_json(config, architecture, source)
        has_labels = "num_labels" in config or "id2label" in config or "id_to_label" in config
    else:
        spec = load_spec(args.model)
        architecture = architecture_for(args.task, family(spec.model_type).hf_classes)
        has_labels = spec.architecture == architecture  # a checkpoint of this head keeps its classes
    if args.num_labels is not None:
        overrides["num_labels"] = args.num_labels
    elif args.task in ("classify", "tag") and not has_labels:
        overrides = _labels_of(label_values(args.task, rows, {**_task_columns(args.task), **(args.columns or {})}))
    if from_spec:
        if "vocab_size" not in config and "vocab_size" in {f.name for f in _fields(spec)}:
            overrides["vocab_size"] = len(tokenizer)
        for name in ("bos_token_id", "eos_token_id"):  # a new model speaks its tokenizer's special tokens
            if name not in config and getattr(tokenizer, name) is not None:
                overrides[name] = getattr(tokenizer, name)
        model = build_model(configure(spec, **overrides), device=args.device)
    else:
        model = load_model(args.model, architecture=architecture, device=args.device, **overrides)
    vocab = getattr(model.spec, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        print(f"bombus train: resizing the token embeddings from {vocab} to {len(tokenizer)} rows to fit the "
              f"tokenizer", file=sys.stderr)
        model.resize_token_embeddings(len(tokenizer))
    result = train(
        model, args.data, task=args.task, tokenizer=tokenizer, eval_data=args.eval_data, steps=args.steps,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        weight_decay=args.weight_decay, warmup_steps=args.warmup if args.warmup < 1 else int(args.warmup),
        gradient_accumulation_steps=args.gradient_accumulation, max_grad_norm=args.max_grad_norm or None,
        bf16=args.bf16, seed=args.seed, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
        output_dir=args.output, keep_checkpoints=args.keep_checkpoints, resume_from=args.resume,
        early_stopping_patience=args.patience, early_stopping_metric=args.metric, max_length=args.max_length,
        columns=args.columns, pack=not args.no_pack, shuffle=not args.no_shuffle,
        mlm_probability=args.mlm_probability,
        progress={"bar": True, "lines": "lines", "none": False}[args.progress])
    summary = {"output": str(args.output), "step": result.step, "loss": result.loss,
               "evaluation": result.metrics, "stopped_early": result.stopped_early,
               "wall_time": round(result.wall_time, 3), "tokens": result.tokens}
    print(json.dumps(summary))
    return 0


def _task_columns(task: str) -> dict[str, str]:
    from .training.data import COLUMNS

    return COLUMNS[task]


def _labels_of(values: list[Any]) -> dict[str, Any]:
    """num_labels (and label names) for a new classification head, from the labels the data uses."""
    from .training.data import _is_index

    if not values:
        return {}
    if all(_is_index(v) for v in values):
        return {"num_labels": max(2, max(int(v) for v in values) + 1)}
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return {"num_labels": 1, "problem_type": "regression"}
    names = sorted({str(v) for v in values})
    return {"num_labels": len(names), "id_to_label": dict(enumerate(names))}


def _read_spec_json(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot read the spec JSON {path}: {e}") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise TrainingError(f"{path} must be a JSON object with a 'model_type' (e.g. \"gpt2\") and the options "
                            f"of the model to build")
    return config


def _fields(spec) -> list:
    import dataclasses

    return list(dataclasses.fields(spec))


def _spec_from_json(config: dict[str, Any], architecture: str, path: Path):
    """A spec from a JSON of config.json keys (`n_embd`, ...) and/or spec option names (`hidden_size`, ...)."""
    from .models import family
    from .spec import configure

    cls = family(config["model_type"]).spec_class
    names = {f.name for f in _fields(cls())} - {"hf_extra", "architecture"}
    hf_keys = {k for f in _fields(cls()) for k in f.metadata.get("hf", ())}
    ours = {k: v for k, v in config.items() if k in names and k not in hf_keys}
    theirs = {k: v for k, v in config.items() if k not in ours}
    if "id_to_label" in ours:
        ours["id_to_label"] = {int(k): v for k, v in ours["id_to_label"].items()}
    try:
        return configure(cls.from_hf_config(theirs, architecture=architecture), **ours)
    except (TypeError, ValueError) as e:
        raise TrainingError(f"{path}: {e}") from None


COMMANDS: list[Callable[[Any], None]] = [add_train]

# The inference commands (generate, classify, tag, answer, embed, similar, info, convert, ...) live in cli_tasks.py.
from .cli_tasks import COMMANDS as _TASK_COMMANDS  # noqa: E402

from .cli_serve import add_serve  # noqa: E402

COMMANDS += _TASK_COMMANDS + [add_serve]
