"""`train` and `evaluate`: the fine-tuning loop over any bombus model with a loss."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import TrainingError
from ..spec import configure
from .data import Batches, Encoder, Examples, Masker, batch_checker, label_names, label_values, split_data
from .tasks import Metrics, architecture_for, check_task, task_of, total_loss

STATE_FILE = "training_state.pt"
LOWER_IS_BETTER = ("loss", "perplexity", "mse")


@dataclass
class TrainingResult:
    """What `train` did. `history`: one entry per optimizer step (`step`, `epoch`, `loss`, `learning_rate`,
    `grad_norm`, `tokens_per_second`); `evaluations`: one per evaluation (`step` and the task's metrics, see
    `Metrics`); `best`: the best evaluation by the early-stopping metric; `checkpoints`: folders written."""

    step: int = 0
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None
    stopped_early: bool = False
    checkpoints: list[str] = field(default_factory=list)
    tokens: int = 0
    wall_time: float = 0.0

    @property
    def loss(self) -> float | None:
        """The training loss of the last step."""
        return self.history[-1]["loss"] if self.history else None

    @property
    def metrics(self) -> dict[str, float] | None:
        """The last evaluation."""
        return self.evaluations[-1] if self.evaluations else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(
    model,
    data: str | os.PathLike | Iterable,
    *,
    task: str | None = None,
    tokenizer=None,
    eval_data: str | os.PathLike | Iterable | None = None,
    steps: int | None = None,
    epochs: int = 1,
    batch_size: int = 8,
    learning_rate: float = 5e-5,
    weight_decay: float = 0.01,
    warmup_steps: int | float = 0,
    gradient_accumulation_steps: int = 1,
    max_grad_norm: float | None = 1.0,
    bf16: bool = False,
    fp16: bool = False,
    seed: int = 0,
    eval_every: int | None = None,
    checkpoint_every: int | None = None,
    output_dir: str | os.PathLike | None = None,
    keep_checkpoints: int | None = None,
    resume_from: str | os.PathLike | bool | None = None,
    early_stopping_patience: int | None = None,
    early_stopping_metric: str = "loss",
    early_stopping_threshold: float = 0.0,
    restore_best: bool = False,
    max_length: int | None = None,
    columns: dict[str, str] | None = None,
    pack: bool = True,
    shuffle: bool = True,
    mlm_probability: float = 0.15,
    progress: bool | str = True,
    log_every: int = 10,
) -> TrainingResult:
    """Train `model` (any bombus model whose architecture has a loss) and return a `TrainingResult`.

    Data (`data`, `eval_data`): an iterable of batches (dicts of tensors with the head's labels: `labels`,
    `start_positions`/`end_positions`, `mc_labels`), used as given; or rows (dicts of text and labels) or a
    `.jsonl`/`.json`/`.csv`/`.tsv` file of rows, tokenized with `tokenizer` (see `bombus.training.data` for the
    columns of each task; rename them with `columns`). Rows are checked before training starts: a missing
    column, a label outside `num_labels`, an empty file raise `TrainingError`.

    Options (defaults in brackets):
    - `task` [from the model's architecture]: "causal-lm", "masked-lm", "classify", "tag", "answer",
      "multiple-choice"; it must match the architecture (GPT-2 does multiple-choice with `for_double_heads`).
    - `steps` [None: `epochs` passes over the data]; `epochs` [1]; `batch_size` [8] (rows per batch; ready
      batches are used as they are); `gradient_accumulation_steps` [1]: batches per optimizer step.
    - AdamW: `learning_rate` [5e-5], `weight_decay` [0.01] (not on biases and norm weights: on parameters of
      2 or more dimensions only); `warmup_steps` [0] (an int, or a float < 1: a fraction of all steps) of
      linear warm-up, then linear decay to 0; `max_grad_norm` [1.0] clips the gradient norm (None: off).
    - `bf16` [False]: forward under bfloat16 autocast (weights and optimizer stay in their dtype).
    - `fp16` [False]: forward under float16 autocast with a gradient scaler (`torch.amp.GradScaler`: the loss
      is scaled so that float16 gradients do not underflow; steps with inf/nan gradients are skipped and the
      scale lowered). Needs float32 weights; on GPUs it is the fast mixed precision of pre-Ampere cards.
    - `seed` [0]: seeds dropout, shuffling and masking; the same seed gives the same run.
    - `eval_every` [None: only at the end, when `eval_data` is given]: evaluate every N steps, in eval mode.
    - `checkpoint_every` [None]: every N steps write `output_dir/checkpoint-<step>/` atomically: the model in
      HF format (`save_pretrained`), the tokenizer, and `training_state.pt` (optimizer, scheduler, step, data
      position, RNG states; loads with `torch.load(weights_only=True)`). `keep_checkpoints` [None: all]: keep
      only the newest N. With `output_dir`, the final model (and tokenizer) is saved there too.
    - `resume_from` [None]: a checkpoint folder, or True for the newest in `output_dir`; training continues
      exactly as the uninterrupted run would (same data order, dropout and masking RNG, schedule).
    - `early_stopping_patience` [None: off]: stop after this many evaluations without an improvement of
      `early_stopping_metric` ["loss"; lower is better for loss/perplexity/mse, higher for the others] by more
      than `early_stopping_threshold` [0.0]. `restore_best` [False]: end with the best evaluated weights.
    - Tokenizing rows: `max_length` [the model's max_positions, or the tokenizer's model_max_length if
      smaller]; `pack` [True]: causal-lm texts (each ending with EOS) are joined and cut into `max_length`
      blocks, else each text is one (truncated) example; `shuffle` [True] the rows each epoch;
      `mlm_probability` [0.15] of tokens to mask for masked-lm.
    - `progress` [True]: a tqdm bar with loss and tokens/s if tqdm is installed, else a line on stderr every
      `log_every` [10] steps; "lines" forces lines; False is silent.

    Sequence classification with GPT-2 needs `spec.pad_token_id` to find each row's last token: when it is
    unset, it is set to the tokenizer's pad id. String labels are mapped through `spec.id_to_label` when it
    names labels; otherwise they are sorted and written to `spec.id_to_label`. The model is in train mode
    (dropout on) while training and left in eval mode.
    """
    _check_options(steps=steps, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                   weight_decay=weight_decay, warmup_steps=warmup_steps, accumulation=gradient_accumulation_steps,
                   max_grad_norm=max_grad_norm, eval_every=eval_every, checkpoint_every=checkpoint_every,
                   keep_checkpoints=keep_checkpoints, log_every=log_every, patience=early_stopping_patience)
    if eval_every is not None and eval_data is None:
        raise TrainingError("eval_every needs eval_data")
    if early_stopping_patience is not None and (eval_data is None or eval_every is None):
        raise TrainingError("early stopping needs eval_data and eval_every (it compares evaluations)")
    if (checkpoint_every is not None or resume_from is True) and output_dir is None:
        raise TrainingError("checkpoint_every and resume_from=True need output_dir")
    if bf16 and fp16:
        raise TrainingError("bf16 and fp16 are two mixed precisions: choose one")
    if fp16:
        odd = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype != torch.float32})
        if odd:
            raise TrainingError(f"fp16 mixed precision needs float32 weights (the gradient scaler unscales float32 "
                                f"gradients), found {', '.join(odd)}: load the model with dtype=torch.float32")
    task = _task(model, task)
    train_source, eval_source = _prepare(model, task, tokenizer, data, eval_data, batch_size=batch_size,
                                         max_length=max_length, columns=columns, pack=pack, shuffle=shuffle,
                                         seed=seed, mlm_probability=mlm_probability)
    try:
        per_epoch = math.ceil(len(train_source) / gradient_accumulation_steps)
    except TypeError:
        if steps is None:
            raise TrainingError("data is an iterator of unknown length: pass steps=") from None
        per_epoch = None
    total = steps if steps is not None else epochs * per_epoch
    warmup = int(warmup_steps * total) if isinstance(warmup_steps, float) and warmup_steps < 1 else int(warmup_steps)

    optimizer = torch.optim.AdamW(_parameter_groups(model, weight_decay), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(warmup, total))
    generator = torch.Generator().manual_seed(seed)  # masked-LM masking
    result = TrainingResult()
    position = {"epoch": 0, "batch": 0}
    stopper = {"best": None, "best_step": 0, "bad": 0}
    output = Path(output_dir) if output_dir is not None else None
    torch.manual_seed(seed)  # dropout
    if resume_from is not None and resume_from is not False:
        folder = _latest_checkpoint(output) if resume_from is True else Path(resume_from)
        state = _resume(model, folder, optimizer, scheduler, generator)
        position, stopper = state["position"], state["early_stopping"]
        result.step, result.tokens = state["step"], state["tokens"]
        result.history, result.evaluations = list(state["history"]), list(state["evaluations"])
        result.best = dict(state["best"]) if state["best"] else None
    best_weights = None

    device, autocast = model.device, _autocast(model, bf16, fp16)
    scaler = torch.amp.GradScaler(device.type) if fp16 else None
    if scaler is not None and resume_from is not None and resume_from is not False and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    accumulation = gradient_accumulation_steps
    bar = _Progress(total, result.step, progress, log_every)
    epoch_limit = epochs if steps is None else math.inf
    started = time.perf_counter()
    micro, step_loss, step_tokens, step_started = 0, 0.0, 0, time.perf_counter()
    stop = result.step >= total

    def evaluate_now() -> None:
        nonlocal stop, best_weights
        metrics = {"step": result.step, **_run_eval(model, eval_source, task, autocast, seed)}
        result.evaluations.append(metrics)
        bar.write("eval " + " ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        if _improved(metrics, stopper, early_stopping_metric, early_stopping_threshold, result):
            if restore_best:
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif early_stopping_patience is not None and stopper["bad"] >= early_stopping_patience:
            result.stopped_early = stop = True
            bar.write(f"early stop at step {result.step}: no {early_stopping_metric} improvement in "
                      f"{stopper['bad']} evaluations (best {stopper['best']:.4g} at step {stopper['best_step']})")

    def optimizer_step() -> None:
        nonlocal micro, step_loss, step_tokens, step_started, stop
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip and report the true gradient norm
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else math.inf)
        rate = optimizer.param_groups[0]["lr"]
        if scaler is not None:
            scaler.step(optimizer)  # skipped when the gradients overflowed
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        result.step += 1
        now = time.perf_counter()
        record = {"step": result.step, "epoch": position["epoch"], "loss": step_loss, "learning_rate": rate,
                  "grad_norm": float(norm), "tokens": step_tokens,
                  "tokens_per_second": step_tokens / max(now - step_started, 1e-9)}
        result.history.append(record)
        bar.step(record)
        micro, step_loss, step_tokens, step_started = 0, 0.0, 0, now
        last = result.step >= total
        if eval_source is not None and ((eval_every and result.step % eval_every == 0) or last):
            evaluate_now()
        if checkpoint_every and result.step % checkpoint_every == 0:
            where = dict(position)  # where the next batch comes from
            if per_epoch is not None and where["batch"] >= len(train_source):
                where = {"epoch": where["epoch"] + 1, "batch": 0}
            folder = _save_checkpoint(output / f"checkpoint-{result.step}", model, tokenizer, optimizer, scheduler,
                                      generator, result, where, stopper, scaler)
            result.checkpoints.append(str(folder))
            _prune(output, keep_checkpoints)
        stop = stop or last

    model.train()
    try:
        while not stop and position["epoch"] < epoch_limit:
            seen = False
            for batch in train_source.epoch(position["epoch"], position["batch"], generator):
                seen = True
                position["batch"] += 1
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                with autocast:
                    out = model(**batch)
                loss = total_loss(out)
                if loss is None:
                    raise TrainingError(f"the model returned no loss for a batch with keys {', '.join(batch)}")
                if not torch.isfinite(loss):
                    raise TrainingError(f"the loss is {float(loss)} at step {result.step + 1}: lower learning_rate, "
                                        f"or check the labels")
                scaled = loss / accumulation
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                step_loss += float(loss.detach()) / accumulation
                tokens = _count_tokens(batch)
                step_tokens += tokens
                result.tokens += tokens
                micro += 1
                if micro == accumulation:
                    optimizer_step()
                    if stop:
                        break
            else:
                if not seen and position["batch"] == 0:
                    break  # an exhausted iterator: no more data
                position.update(epoch=position["epoch"] + 1, batch=0)
        if micro and not stop:  # the data ran out inside an accumulation: take the partial step
            step_loss *= accumulation / micro
            optimizer_step()
        if eval_source is not None and (not result.evaluations or result.evaluations[-1]["step"] != result.step):
            evaluate_now()  # the data ran out before `steps`: evaluate the final weights too
    finally:
        bar.close()
        model.eval()
    result.epoch = position["epoch"]
    result.wall_time = time.perf_counter() - started
    if restore_best and result.best is not None and result.best["step"] != result.step:
        if best_weights is None and output is not None and (output / f"checkpoint-{result.best['step']}").is_dir():
            best_weights = _load_weights(model, output / f"checkpoint-{result.best['step']}")
        if best_weights is not None:
            model.load_state_dict(best_weights)
        else:
            warnings.warn(f"restore_best: the weights of step {result.best['step']} are not available (resumed "
                          f"run without that checkpoint); keeping the last weights", stacklevel=2)
    if output is not None:
        model.save_pretrained(output)
        if tokenizer is not None:
            tokenizer.save_pretrained(output)
    return result


def evaluate(model, data: str | os.PathLike | Iterable, *, task: str | None = None, tokenizer=None,
             batch_size: int = 8, bf16: bool = False, fp16: bool = False, max_length: int | None = None,
             columns: dict[str, str] | None = None, pack: bool = True, mlm_probability: float = 0.15,
             seed: int = 0) -> dict[str, float]:
    """The task's metrics of `model` on `data` (same forms and options as `train`; `batch_size` [8], `bf16`
    [False] or `fp16` [False] autocast, `seed` [0] of the masked-LM masks): `loss` and e.g. `perplexity`, `accuracy`, `f1` (see
    `bombus.training.tasks.Metrics`). Runs in eval mode, without gradients; the model's mode is restored."""
    _check_options(batch_size=batch_size)
    task = _task(model, task)
    source, _ = _prepare(model, task, tokenizer, data, None, batch_size=batch_size, max_length=max_length,
                         columns=columns, pack=pack, shuffle=False, seed=seed, mlm_probability=mlm_probability)
    was_training = model.training
    try:
        return _run_eval(model, source, task, _autocast(model, bf16, fp16), seed)
    finally:
        model.train(was_training)


# -- preparation ------------------------------------------------------------------------------------------


def _task(model, task: str | None) -> str:
    if task is None:
        return task_of(model.architecture)
    check_task(task)
    wanted = architecture_for(task, type(model).hf_classes)
    if wanted != model.architecture:
        raise TrainingError(f"task {task!r} trains a {wanted} model, but this model is {model.architecture}; load "
                            f"it with architecture={wanted!r}" + (" (and num_labels=...)" if task in ("classify", "tag")
                                                                  else ""))
    return task


def _prepare(model, task, tokenizer, data, eval_data, *, batch_size, max_length, columns, pack, shuffle, seed,
             mlm_probability):
    train_rows, train_batches, train_name = split_data(data, "data")
    eval_rows, eval_batches, eval_name = split_data(eval_data, "eval_data") if eval_data is not None else (
        None, None, None)
    check = batch_checker(model, task)
    sources = [Batches(train_batches, check, train_name) if train_batches is not None else None,
               Batches(eval_batches, check, eval_name) if eval_batches is not None else None]
    row_sets = [(i, rows, name) for i, (rows, name) in enumerate([(train_rows, train_name), (eval_rows, eval_name)])
                if rows is not None]
    if row_sets:
        if tokenizer is None:
            raise TrainingError("training on rows or a file needs a tokenizer: pass tokenizer=load_tokenizer(...)")
        spec = model.spec
        regression = spec.problem_type == "regression" or (spec.problem_type is None and spec.num_labels == 1)
        values = [] if task == "classify" and regression else [
            v for _, rows, _ in row_sets for v in label_values(task, rows, _columns(task, columns))]
        names, inferred = label_names(values, spec, " and ".join(name for _, _, name in row_sets))
        if inferred:  # the data names the labels: remember the names, so the saved config has them
            model.spec = spec = configure(spec, id_to_label={i: names[i] if i < len(names) else f"LABEL_{i}"
                                                             for i in range(spec.num_labels)})
        pad_id = _pad_id(tokenizer)
        if task == "classify" and getattr(spec, "pad_token_id", "absent") is None:
            model.spec = spec = configure(spec, pad_token_id=pad_id)
        length = max_length or _default_max_length(model, tokenizer)
        encoder = Encoder(task, tokenizer, spec, max_length=length, columns=columns, names=names, pack=pack,
                          architecture=model.architecture)
        masker = (Masker(tokenizer.mask_token_id, spec.vocab_size, mlm_probability) if task == "masked-lm" else None)
        for i, rows, name in row_sets:
            sources[i] = Examples(encoder(rows, name), pad_id=pad_id, batch_size=batch_size,
                                  shuffle=shuffle and i == 0, seed=seed, masker=masker)
    return sources[0], sources[1]


def _columns(task: str, columns: dict[str, str] | None) -> dict[str, str]:
    from .data import COLUMNS

    return {**COLUMNS[task], **(columns or {})}


def _pad_id(tokenizer) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0  # padding is masked out (attention mask 0, labels -100), so any id does


def _default_max_length(model, tokenizer) -> int:
    limits = [getattr(model.spec, "max_positions", None), tokenizer.model_max_length]
    limits = [int(n) for n in limits if n]
    return min(limits) if limits else 512


def _check_options(**options: Any) -> None:
    positive = ("steps", "epochs", "batch_size", "accumulation", "eval_every", "checkpoint_every",
                "keep_checkpoints", "log_every", "patience")
    for name in positive:
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise TrainingError(f"{'gradient_accumulation_steps' if name == 'accumulation' else name} must be a "
                                f"positive int, got {value!r}")
    for name in ("learning_rate",):
        if name in options and not (isinstance(options[name], (int, float)) and options[name] > 0):
            raise TrainingError(f"{name} must be a positive number, got {options[name]!r}")
    for name in ("weight_decay", "warmup_steps", "max_grad_norm"):
        value = options.get(name)
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise TrainingError(f"{name} must be a number >= 0, got {value!r}")


# -- optimisation -------------------------------------------------------------------------------------------


def _parameter_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices (linear and embedding weights), not biases and norm weights (1-D parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError("the model has no trainable parameters (all have requires_grad=False)")
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def _linear_schedule(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _autocast(model, bf16: bool, fp16: bool = False):
    if not (bf16 or fp16):
        return contextlib.nullcontext()
    return torch.autocast(device_type=model.device.type, dtype=torch.bfloat16 if bf16 else torch.float16)


def _count_tokens(batch: dict[str, Any]) -> int:
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor):
        return int(mask.sum())
    ids = batch.get("input_ids")
    return int(ids.numel()) if isinstance(ids, torch.Tensor) else 0


def _run_eval(model, source, task: str, autocast, seed: int) -> dict[str, float]:
    model.eval()
    metrics = Metrics(task, model.spec.num_labels, model.spec.problem_type)
    generator = torch.Generator().manual_seed(seed + 1)  # the same masks at every evaluation
    with torch.no_grad():
        for batch in source.epoch(0, 0, generator):
            batch = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            with autocast:
                out = model(**batch)
            metrics.update(batch, out)
    model.train()
    return metrics.result()


def _improved(metrics: dict[str, float], stopper: dict, name: str, threshold: float, result: TrainingResult) -> bool:
    if name not in metrics:
        raise TrainingError(f"early_stopping_metric {name!r} is not among the evaluation metrics: "
                            f"{', '.join(k for k in metrics if k != 'step')}")
    value, best = metrics[name], stopper["best"]
    lower = name in LOWER_IS_BETTER
    if best is None or (value < best - threshold if lower else value > best + threshold):
        stopper.update(best=value, best_step=metrics["step"], bad=0)
        result.best = dict(metrics)
        return True
    stopper["bad"] += 1
    return False


# -- checkpoints --------------------------------------------------------------------------------------------


def _save_checkpoint(folder: Path, model, tokenizer, optimizer, scheduler, generator, result: TrainingResult,
                     position: dict, stopper: dict, scaler=None) -> Path:
    """Write the checkpoint into a temporary folder, then rename it: a checkpoint folder is always whole."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    state = {
        "step": result.step, "tokens": result.tokens, "position": dict(position), "early_stopping": dict(stopper),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(), "data_rng": generator.get_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": result.history, "evaluations": result.evaluations, "best": result.best,
        "scaler": scaler.state_dict() if scaler is not None else {},
    }
    torch.save(state, tmp / STATE_FILE)
    if folder.exists():
        old = folder.parent / f".{folder.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    return folder


def _prune(output: Path, keep: int | None) -> None:
    if keep is None:
        return
    for folder in _checkpoints(output)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


def _checkpoints(output: Path) -> list[Path]:
    found = [p for p in output.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def _latest_checkpoint(output: Path) -> Path:
    found = _checkpoints(output) if output.is_dir() else []
    if not found:
        raise TrainingError(f"resume_from=True: no checkpoint-<step> folder in {output}")
    return found[-1]


def _load_weights(model, folder: Path) -> dict[str, torch.Tensor]:
    from ..loading import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_model(folder, architecture=model.architecture, dtype=model.dtype, device=model.device)
    return loaded.state_dict()


def _resume(model, folder: Path, optimizer, scheduler, generator) -> dict[str, Any]:
    state_file = folder / STATE_FILE
    if not state_file.is_file():
        raise TrainingError(f"cannot resume from {folder}: it has no {STATE_FILE} (is it a checkpoint-<step> "
                            f"folder written by bombus.train?)")
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainingError(f"cannot read {state_file}: {e}") from None
    try:
        model.load_state_dict(_load_weights(model, folder))
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError) as e:
        raise TrainingError(f"the checkpoint {folder} does not fit this model (resize its embeddings or give the "
                            f"same architecture as when it was written): {e}") from None
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    generator.set_state(state["data_rng"])
    return state


# -- progress -----------------------------------------------------------------------------------------------


class _Progress:
    """A tqdm bar (when installed and `mode` is True), lines on stderr every `every` steps ("lines", or no
    tqdm), or nothing (False)."""

    def __init__(self, total: int, initial: int, mode: bool | str, every: int):
        self.total, self.every, self.bar, self.enabled = total, every, None, bool(mode)
        self.started, self.tokens = time.perf_counter(), 0
        if mode is True:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="step", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def step(self, record: dict[str, float]) -> None:
        self.tokens += record["tokens"]
        speed = self.tokens / max(time.perf_counter() - self.started, 1e-9)  # since the start: steadier
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['learning_rate']:.2e}",
                                 tok_s=f"{speed:.0f}", refresh=False)
            self.bar.update(1)
        elif self.enabled and (record["step"] % self.every == 0 or record["step"] >= self.total):
            print(f"step {record['step']}/{self.total} loss {record['loss']:.4f} lr {record['learning_rate']:.2e} "
                  f"{speed:.0f} tokens/s", file=sys.stderr, flush=True)

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        elif self.enabled:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
