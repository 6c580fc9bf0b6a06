"""Training data -> batches of tensors.

Data comes as ready batches (an iterable of dicts of tensors, e.g. a `DataLoader`), as rows (dicts of text
and labels), or as a file of rows: JSON lines (`.jsonl`), a JSON array (`.json`), `.csv` or `.tsv`. Rows are
tokenized once, up front, so that every problem in them (a missing column, a label out of range, an empty
file) is reported before training starts; batches are then padded per batch.

Columns (defaults; rename with `columns={"text": "sentence"}`):
  causal-lm, masked-lm: `text`
  classify: `text`, optional `text_pair`, `label` (an index, a label name, a float for regression, or a
            list of labels for multi-label models)
  tag: `tokens` (a list of words, or a string split at whitespace) and `tags` (one label per word)
  answer: `question`, `context`, `answers` (SQuAD: {"text": [...], "answer_start": [...]}; or the columns
          `answer` and `answer_start`; no answer: the span is the first token, as in transformers)
  multiple-choice: optional `question`, `choices` (a list of texts), `label` (index of the right choice)
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Callable

import tokenizers
import torch

from ..errors import TrainingError
from ..layers.losses import IGNORE
from .tasks import LABEL_KEYS

COLUMNS = {
    "causal-lm": {"text": "text"},
    "masked-lm": {"text": "text"},
    "classify": {"text": "text", "text_pair": "text_pair", "label": "label"},
    "tag": {"tokens": "tokens", "tags": "tags"},
    "answer": {"question": "question", "context": "context", "answers": "answers", "answer": "answer",
               "answer_start": "answer_start"},
    "multiple-choice": {"question": "question", "choices": "choices", "label": "label"},
}
FILE_TYPES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv")


# -- reading ------------------------------------------------------------------------------------------------


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a `.jsonl`/`.ndjson` (one JSON object a line), `.json` (an array of objects, or JSON
    lines), `.csv` or `.tsv` file (first line: column names). Raises `TrainingError` for a missing, empty
    or malformed file."""
    path = Path(path)
    if path.suffix.lower() not in FILE_TYPES:
        raise TrainingError(f"data file {path}: unknown type {path.suffix!r}; expected one of {', '.join(FILE_TYPES)}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrainingError(f"data file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TrainingError(f"cannot read data file {path}: {e}") from None
    if path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        rows = [dict(row) for row in reader]
        for i, row in enumerate(rows):
            if None in row:
                raise TrainingError(f"{path} line {i + 2}: more fields than the {len(reader.fieldnames)} column "
                                    f"names of the first line")
    elif path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise TrainingError(f"{path} is not valid JSON: {e}") from None
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise TrainingError(f"{path} line {number} is not valid JSON: {e}") from None
    if not rows:
        raise TrainingError(f"data file {path} has no rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise TrainingError(f"{path} row {i + 1}: expected a JSON object of columns, found {type(row).__name__}")
    return rows


def split_data(data: Any, name: str) -> tuple[list[dict] | None, Iterable | None, str]:
    """`(rows, None, where)` for a file or rows, `(None, batches, where)` for an iterable of tensor batches."""
    if isinstance(data, (str, os.PathLike)):
        return read_rows(data), None, str(data)
    if isinstance(data, Mapping) or not isinstance(data, Iterable):
        raise TrainingError(f"{name} must be a file path, a list of rows (dicts) or an iterable of batches "
                            f"(dicts of tensors), got {type(data).__name__}")
    iterator = iter(data)
    first = next(iterator, None)
    if first is None:
        raise TrainingError(f"{name} is empty")
    if not isinstance(first, Mapping):
        raise TrainingError(f"{name}: each item must be a dict (a row, or a batch of tensors), found "
                            f"{type(first).__name__}")
    if any(isinstance(v, torch.Tensor) for v in first.values()):
        # an iterator would lose its first batch to this look: put it back
        return None, (data if iterator is not data else itertools.chain([first], iterator)), name
    rows = [first, *iterator] if iterator is data else list(data)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TrainingError(f"{name} row {i + 1}: expected a dict, found {type(row).__name__}")
    return [dict(r) for r in rows], None, name


# -- labels -------------------------------------------------------------------------------------------------


def _is_index(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit())


def label_values(task: str, rows: list[dict], columns: dict[str, str]) -> list[Any]:
    """The class labels the rows use (for classify and tag), flattened."""
    if task == "classify":
        values = [row.get(columns["label"]) for row in rows]
        return [v for value in values for v in (value if isinstance(value, list) else [value]) if v is not None]
    if task == "tag":
        return [v for row in rows for v in _list(row.get(columns["tags"]))]
    return []


def label_names(values: list[Any], spec, where: str = "the data") -> tuple[list[str] | None, bool]:
    """`(names, inferred)`: the label names that index the classes, or None when the labels are indices.
    Names come from the spec's `id_to_label` when it names labels, else from the data (sorted)."""
    if all(_is_index(v) or isinstance(v, float) for v in values):
        return None, False
    named = {i: str(n) for i, n in (spec.id_to_label or {}).items()}
    if named and any(n != f"LABEL_{i}" for i, n in named.items()):
        return [named.get(i, f"LABEL_{i}") for i in range(spec.num_labels)], False
    names = sorted({str(v) for v in values})
    if len(names) > spec.num_labels:
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise TrainingError(f"{where}: {len(names)} distinct labels ({shown}), but the model has "
                            f"num_labels={spec.num_labels}; load it with num_labels={len(names)}")
    return names, True


class _Labels:
    """Turns one label value (index or name) into a class index, with errors naming where it was found."""

    def __init__(self, names: list[str] | None, num_labels: int):
        self.index = None if names is None else {n: i for i, n in enumerate(names)}
        self.names, self.num_labels = names, num_labels

    def __call__(self, value: Any, where: str) -> int:
        if self.index is not None and str(value) in self.index:
            return self.index[str(value)]
        if not _is_index(value):
            known = f"; known labels: {', '.join(self.names)}" if self.names else ""
            raise TrainingError(f"{where}: label {value!r} is neither a class index nor a known label{known}")
        label = int(value)
        if not 0 <= label < self.num_labels:
            raise TrainingError(f"{where}: label {label} is outside 0..{self.num_labels - 1} "
                                f"(the model has num_labels={self.num_labels})")
        return label


# -- rows -> examples ---------------------------------------------------------------------------------------


def _column(row: dict, columns: dict[str, str], name: str, where: str, required: bool = True) -> Any:
    key = columns[name]
    if key not in row or row[key] is None:
        if not required:
            return None
        raise TrainingError(f"{where} has no {key!r} column (columns: {', '.join(map(str, row)) or 'none'}); "
                            f"name the {name} column with columns={{{name!r}: ...}} (--columns {name}=...)")
    return row[key]


def _string(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise TrainingError(f"{where}: {key!r} must be a string, found {type(value).__name__} {value!r:.60}")
    return value


def _list(value: Any) -> list:
    if isinstance(value, str):  # CSV: a JSON list, or words separated by whitespace
        text = value.strip()
        if text.startswith("["):
            try:
                return list(json.loads(text))
            except json.JSONDecodeError:
                pass
        return text.split()
    return list(value) if isinstance(value, (list, tuple)) else []


class Encoder:
    """Tokenizes rows for one task with a private copy of the tokenizer's backend (so truncation settings
    are never shared) and checks every row."""

    def __init__(self, task: str, tokenizer, spec, *, max_length: int, columns: dict[str, str] | None,
                 names: list[str] | None, pack: bool, architecture: str):
        if tokenizer is None:
            raise TrainingError("training on rows or a file needs a tokenizer: pass tokenizer=load_tokenizer(...)")
        unknown = set(columns or {}) - set(COLUMNS[task])
        if unknown:
            raise TrainingError(f"unknown column name(s) {sorted(unknown)} for task {task!r}; "
                                f"known: {', '.join(COLUMNS[task])}")
        self.task, self.tokenizer, self.spec, self.max_length = task, tokenizer, spec, max_length
        self.columns = {**COLUMNS[task], **(columns or {})}
        self.labels = _Labels(names, spec.num_labels)
        self.pack, self.architecture = pack, architecture
        self.types = "token_type_ids" in tokenizer.model_input_names
        self.backend = tokenizers.Tokenizer.from_str(tokenizer.backend.to_str())
        self.backend.no_padding()
        if task == "masked-lm" and tokenizer.mask_token_id is None:
            raise TrainingError("masked-lm training needs a tokenizer with a mask token; add one with "
                                "tok.add_special_tokens({'mask_token': '[MASK]'})")

    def _truncate(self, strategy: str = "longest_first", length: int | None = None) -> None:
        self.backend.enable_truncation(length or self.max_length, strategy=strategy)

    def __call__(self, rows: list[dict], name: str) -> list[dict[str, Any]]:
        encode = getattr(self, "_" + self.task.replace("-", "_"))
        items = encode(rows, name)
        if not items:
            raise TrainingError(f"{name} gives no training examples (all rows empty?)")
        vocab = getattr(self.spec, "vocab_size", None)
        top = max(max(_flat(item["input_ids"])) for item in items)
        if vocab is not None and top >= vocab:
            raise TrainingError(f"{name}: the tokenizer gives token id {top}, but the model's vocab_size is {vocab}; "
                                f"after adding tokens call model.resize_token_embeddings(len(tokenizer)) "
                                f"(= {len(self.tokenizer)})")
        return items

    def _texts(self, rows, name, key="text") -> list[str]:
        return [_string(_column(r, self.columns, key, f"{name} row {i + 1}"), f"{name} row {i + 1}",
                        self.columns[key]) for i, r in enumerate(rows)]

    def _causal_lm(self, rows, name):
        texts = self._texts(rows, name)
        self.backend.no_truncation()
        eos = self.tokenizer.eos_token_id
        sequences = []
        for e in self.backend.encode_batch(texts):
            ids = list(e.ids)
            if eos is not None and (not ids or ids[-1] != eos):
                ids.append(eos)  # documents end with EOS, so a model learns where text stops
            sequences.append(ids)
        if self.pack:  # one stream cut into blocks of max_length (documents may span blocks)
            stream = [t for ids in sequences for t in ids]
            L = self.max_length
            blocks = [stream[i:i + L] for i in range(0, len(stream), L)]
            sequences = [b for b in blocks if len(b) >= 2]
        else:
            sequences = [ids[: self.max_length] for ids in sequences if ids]
        return [{"input_ids": ids, "labels": ids} for ids in sequences]

    def _masked_lm(self, rows, name):
        self._truncate()
        out = []
        for e in self.backend.encode_batch(self._texts(rows, name)):
            item = {"input_ids": e.ids, "special_tokens_mask": e.special_tokens_mask}
            if self.types:
                item["token_type_ids"] = e.type_ids
            out.append(item)
        return out

    def _classify(self, rows, name):
        self._truncate()
        spec = self.spec
        regression = spec.problem_type == "regression" or (spec.problem_type is None and spec.num_labels == 1)
        out = []
        for i, row in enumerate(rows):
            where = f"{name} row {i + 1}"
            text = _string(_column(row, self.columns, "text", where), where, self.columns["text"])
            pair = _column(row, self.columns, "text_pair", where, required=False)
            e = self.backend.encode(text, _string(pair, where, self.columns["text_pair"]) if pair else None)
            value = _column(row, self.columns, "label", where)
            if regression:
                try:
                    label: Any = float(value)
                except (TypeError, ValueError):
                    raise TrainingError(f"{where}: a regression label must be a number, found {value!r}") from None
            elif isinstance(value, list) or spec.problem_type == "multi_label_classification":
                label = [0.0] * spec.num_labels
                for v in _list(value) if isinstance(value, (list, str)) else [value]:
                    label[self.labels(v, where)] = 1.0
            else:
                label = self.labels(value, where)
            item = {"input_ids": e.ids, "labels": label}
            if self.types:
                item["token_type_ids"] = e.type_ids
            out.append(item)
        return out

    def _tag(self, rows, name):
        self._truncate()
        out = []
        for i, row in enumerate(rows):
            where = f"{name} row {i + 1}"
            words = [str(w) for w in _list(_column(row, self.columns, "tokens", where))]
            tags = _list(_column(row, self.columns, "tags", where))
            if not words or len(words) != len(tags):
                raise TrainingError(f"{where}: {len(words)} words but {len(tags)} tags; each word needs one tag")
            tags = [self.labels(t, where) for t in tags]
            e = self.backend.encode(words, is_pretokenized=True)
            labels, previous = [], None
            for word in e.word_ids:  # the first token of each word carries its tag (transformers' recipe)
                labels.append(IGNORE if word is None or word == previous else tags[word])
                previous = word
            item = {"input_ids": e.ids, "labels": labels}
            if self.types:
                item["token_type_ids"] = e.type_ids
            out.append(item)
        return out

    def _answer(self, rows, name):
        self._truncate("only_second")
        cls = self.tokenizer.cls_token_id
        out = []
        for i, row in enumerate(rows):
            where = f"{name} row {i + 1}"
            question = _string(_column(row, self.columns, "question", where), where, self.columns["question"])
            context = _string(_column(row, self.columns, "context", where), where, self.columns["context"])
            text, start = self._answer_span(row, where)
            if text and context[start:start + len(text)] != text:
                raise TrainingError(f"{where}: the answer {text!r} is not at answer_start={start} of the context "
                                    f"(found {context[start:start + len(text)]!r})")
            try:
                e = self.backend.encode(question, context)
            except Exception as err:  # the question alone is longer than max_length
                raise TrainingError(f"{where}: cannot fit the question into max_length={self.max_length}: {err}"
                                    ) from None
            first = e.ids.index(cls) if cls is not None and cls in e.ids else 0
            span = (first, first)  # no answer, or cut off by truncation: point at the first token
            if text:
                end = start + len(text)
                tokens = [t for t, s in enumerate(e.sequence_ids) if s == 1]
                inside = [t for t in tokens if e.offsets[t][1] > start and e.offsets[t][0] < end]
                if inside and e.offsets[tokens[0]][0] <= start and e.offsets[tokens[-1]][1] >= end:
                    span = (inside[0], inside[-1])
            item = {"input_ids": e.ids, "start_positions": span[0], "end_positions": span[1]}
            if self.types:
                item["token_type_ids"] = e.type_ids
            out.append(item)
        return out

    def _answer_span(self, row, where) -> tuple[str, int]:
        answers = _column(row, self.columns, "answers", where, required=False)
        if answers is None:
            text = _column(row, self.columns, "answer", where, required=False)
            if text is None:
                raise TrainingError(f"{where} has neither an {self.columns['answers']!r} column (SQuAD style) nor "
                                    f"{self.columns['answer']!r} + {self.columns['answer_start']!r} columns")
            answers = {"text": [text], "answer_start": [_column(row, self.columns, "answer_start", where)]}
        if isinstance(answers, str):
            answers = json.loads(answers)
        if not isinstance(answers, dict) or "text" not in answers or "answer_start" not in answers:
            raise TrainingError(f"{where}: answers must look like {{'text': [...], 'answer_start': [...]}}, "
                                f"found {answers!r:.80}")
        texts, starts = _list(answers["text"]) if not isinstance(answers["text"], str) else [answers["text"]], \
            answers["answer_start"] if isinstance(answers["answer_start"], list) else [answers["answer_start"]]
        if not texts:
            return "", 0
        if not starts or not _is_index(starts[0]) or int(starts[0]) < 0:
            raise TrainingError(f"{where}: answer_start must be a character index >= 0, found {starts!r:.40}")
        return str(texts[0]), int(starts[0])

    def _multiple_choice(self, rows, name):
        self._truncate()
        double = self.architecture == "for_double_heads"
        cls = self.tokenizer.cls_token_id
        joined = self.backend.num_special_tokens_to_add(True) == 0  # no pair template (GPT-2): one text
        out, count = [], None
        for i, row in enumerate(rows):
            where = f"{name} row {i + 1}"
            question = _column(row, self.columns, "question", where, required=False) or ""
            choices = _column(row, self.columns, "choices", where)
            choices = _list(choices) if isinstance(choices, str) else choices
            if not isinstance(choices, list) or len(choices) < 2:
                raise TrainingError(f"{where}: {self.columns['choices']!r} must be a list of at least 2 texts")
            if count is not None and len(choices) != count:
                raise TrainingError(f"{where}: {len(choices)} choices, but earlier rows have {count}; every row "
                                    f"needs the same number of choices")
            count = len(choices)
            choices = [_string(c, where, self.columns["choices"]) for c in choices]
            labels = _Labels(None, len(choices))
            label = labels(_column(row, self.columns, "label", where), where)
            if joined or not question:
                encodings = self.backend.encode_batch([f"{question} {c}".strip() for c in choices])
            else:
                encodings = self.backend.encode_batch([(question, c) for c in choices])
            ids = [list(e.ids) for e in encodings]
            item: dict[str, Any] = {"input_ids": ids}
            if double:
                if cls is not None:  # the GPT-2 page's recipe: a [CLS] token at the end is summarised
                    ids = [(x if x[-1] == cls else (x[: self.max_length - 1] + [cls])) for x in ids]
                item = {"input_ids": ids, "mc_token_ids": [len(x) - 1 for x in ids], "mc_labels": label}
            else:
                item["labels"] = label
                if self.types:
                    item["token_type_ids"] = [e.type_ids for e in encodings]
            out.append(item)
        return out


def _flat(value) -> list[int]:
    return [t for v in value for t in (v if isinstance(v, list) else [v])] or [0]


# -- examples -> batches ------------------------------------------------------------------------------------


def collate(items: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the lists of a batch of examples to its longest (`input_ids` with `pad_id`, `labels` with -100,
    others with 0) and add `attention_mask`; scalars stack."""
    batch: dict[str, torch.Tensor] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        fill = pad_id if key == "input_ids" else IGNORE if key == "labels" else 0
        if isinstance(values[0], list) and values[0] and isinstance(values[0][0], list):  # [choices][tokens]
            length = max(len(v) for row in values for v in row)
            batch[key] = torch.tensor([[v + [fill] * (length - len(v)) for v in row] for row in values])
        elif isinstance(values[0], list) and key != "mc_token_ids":
            length = max(len(v) for v in values)
            batch[key] = torch.tensor([v + [fill] * (length - len(v)) for v in values])
        else:
            batch[key] = torch.tensor(values)
    ids = [item["input_ids"] for item in items]
    if ids[0] and isinstance(ids[0][0], list):
        length = batch["input_ids"].shape[-1]
        batch["attention_mask"] = torch.tensor([[[1] * len(v) + [0] * (length - len(v)) for v in row] for row in ids])
    else:
        length = batch["input_ids"].shape[-1]
        batch["attention_mask"] = torch.tensor([[1] * len(v) + [0] * (length - len(v)) for v in ids])
    return batch


class Masker:
    """Masked-LM inputs (BERT's recipe): `probability` of the non-special tokens become targets; of those
    80% are replaced by the mask token, 10% by a random token and 10% kept."""

    def __init__(self, mask_id: int, vocab_size: int, probability: float):
        if not 0 < probability < 1:
            raise TrainingError(f"mlm_probability must be between 0 and 1, got {probability}")
        self.mask_id, self.vocab_size, self.probability = mask_id, vocab_size, probability

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        ids = batch["input_ids"]
        special = batch.pop("special_tokens_mask").bool() | (batch["attention_mask"] == 0)
        chosen = (torch.rand(ids.shape, generator=generator) < self.probability) & ~special
        if not chosen.any():  # a batch without targets has no loss: take one token
            candidates = (~special).flatten().nonzero().flatten()
            if len(candidates):
                pick = candidates[torch.randint(len(candidates), (1,), generator=generator)]
                chosen.view(-1)[pick] = True
        labels = ids.masked_fill(~chosen, IGNORE)
        roll = torch.rand(ids.shape, generator=generator)
        randoms = torch.randint(self.vocab_size, ids.shape, generator=generator)
        ids = torch.where(chosen & (roll < 0.8), torch.full_like(ids, self.mask_id), ids)
        ids = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), randoms, ids)
        return {**batch, "input_ids": ids, "labels": labels}


class Examples:
    """Tokenized examples served as padded batches, shuffled per epoch with `seed` (stateless: a resumed
    run sees the same order)."""

    def __init__(self, items: list[dict[str, Any]], *, pad_id: int, batch_size: int, shuffle: bool, seed: int,
                 masker: Masker | None = None):
        self.items, self.pad_id, self.batch_size = items, pad_id, batch_size
        self.shuffle, self.seed, self.masker = shuffle, seed, masker

    def __len__(self) -> int:
        return math.ceil(len(self.items) / self.batch_size)

    def epoch(self, index: int, skip: int = 0, generator: torch.Generator | None = None
              ) -> Iterator[dict[str, torch.Tensor]]:
        n = len(self.items)
        order = (torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 7919 + index)).tolist()
                 if self.shuffle else list(range(n)))
        for b in range(skip, len(self)):
            batch = collate([self.items[i] for i in order[b * self.batch_size:(b + 1) * self.batch_size]],
                            self.pad_id)
            yield self.masker(batch, generator) if self.masker is not None else batch


class Batches:
    """Ready batches from the caller, checked as they come (all up front when given as a list)."""

    def __init__(self, data: Iterable, check: Callable[[Any, str], None], name: str):
        self.data, self.check, self.name = data, check, name
        if isinstance(data, (list, tuple)):
            for i, batch in enumerate(data):
                check(batch, f"{name} batch {i + 1}")

    def __len__(self) -> int:
        return len(self.data)  # TypeError for iterators: the caller then needs `steps`

    def epoch(self, index: int, skip: int = 0, generator=None) -> Iterator[dict[str, torch.Tensor]]:
        for i, batch in enumerate(self.data):
            if i >= skip:
                self.check(batch, f"{self.name} batch {i + 1}")
                yield batch


def batch_checker(model, task: str) -> Callable[[Any, str], None]:
    """A check of one ready batch: a dict of tensors, with the labels the head needs, ids and labels in range."""
    spec, arch = model.spec, model.architecture
    vocab = getattr(spec, "vocab_size", None)
    needed = LABEL_KEYS.get(arch, ("labels",))

    def check(batch: Any, where: str) -> None:
        if not isinstance(batch, Mapping):
            raise TrainingError(f"{where}: expected a dict of tensors, found {type(batch).__name__}")
        present = [k for k in needed if batch.get(k) is not None]
        if not present or (arch == "for_question_answering" and len(present) < 2):
            raise TrainingError(f"{where} has no labels: a {arch} model needs "
                                f"{' and '.join(needed) if arch == 'for_question_answering' else ' or '.join(needed)} "
                                f"(keys found: {', '.join(map(str, batch))})")
        ids = batch.get("input_ids")
        bad_ids = isinstance(ids, torch.Tensor) and ids.numel() and (ids.max() >= (vocab or math.inf) or ids.min() < 0)
        if bad_ids:
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise TrainingError(f"{where}: input_ids hold {bad}, outside 0..{(vocab or 0) - 1} (the model's "
                                f"vocab_size={vocab}); after adding tokens call "
                                f"model.resize_token_embeddings(len(tokenizer))")
        labels = batch.get("labels")
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point():
            return
        limit = {"causal-lm": vocab, "masked-lm": vocab, "tag": spec.num_labels}.get(task)
        if task == "classify" and spec.num_labels > 1 and spec.problem_type in (None, "single_label_classification"):
            limit = spec.num_labels
        if task == "multiple-choice" and isinstance(ids, torch.Tensor) and ids.dim() == 3:
            limit = ids.shape[1]
        kept = labels[labels != IGNORE] if task != "classify" else labels
        if limit is not None and kept.numel() and (kept.max() >= limit or kept.min() < 0):
            bad = int(kept.max()) if kept.max() >= limit else int(kept.min())
            raise TrainingError(f"{where}: label {bad} is outside 0..{limit - 1} "
                                f"({'num_labels' if task in ('classify', 'tag') else 'the number of classes'}"
                                f"={limit})")

    return check
