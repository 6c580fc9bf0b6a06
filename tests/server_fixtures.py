"""Tiny random checkpoints for the server tests (built with transformers, saved with their tokenizer files), and a
helper that runs `bombus serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import torch

from generation_fixtures import _randomised
from text_fixtures import MINILM, NER_LABELS, NLI_LABELS, OPENAI_GPT2

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
SRC = Path(__file__).resolve().parent.parent / "src"


def build_models(root: Path, only: tuple[str, ...] | None = None) -> dict[str, Path]:
    """A causal LM "tiny-lm" (LLaMA, GPT-2's vocabulary, chat template) and BERT models for every encoder task
    ("tiny-embed", "tiny-mlm", "tiny-nli", "tiny-ner", "tiny-qa"); `only` builds just these."""
    import transformers as T

    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = T.LlamaConfig(vocab_size=50257, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                           bos_token_id=50256, eos_token_id=50256, pad_token_id=50256)
        torch.manual_seed(0)
        folder = root / "tiny-lm"
        _randomised(T.LlamaForCausalLM(lm), seed=3, std=0.5).save_pretrained(folder)
        shutil.copy(OPENAI_GPT2 / "encoder.json", folder / "vocab.json")
        shutil.copy(OPENAI_GPT2 / "vocab.bpe", folder / "merges.txt")
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "GPT2Tokenizer", "eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
             "chat_template": CHAT_TEMPLATE}))
        out["tiny-lm"] = folder
        if only is not None and set(only) <= {"tiny-lm"}:
            return out
        common = dict(vocab_size=30522, max_position_embeddings=128, hidden_size=16, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=32)
        heads = {"tiny-embed": ("BertModel", {}), "tiny-mlm": ("BertForMaskedLM", {}),
                 "tiny-nli": ("BertForSequenceClassification", NLI_LABELS),
                 "tiny-ner": ("BertForTokenClassification", NER_LABELS),
                 "tiny-qa": ("BertForQuestionAnswering", {})}
        for seed, (name, (cls, labels)) in enumerate(heads.items()):
            extra = {"id2label": labels, "label2id": {v: k for k, v in labels.items()}} if labels else {}
            folder = root / name
            model = _randomised(getattr(T, cls)(T.BertConfig(**common, **extra)), seed=10 + seed, std=0.5)
            model.save_pretrained(folder)
            for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
                shutil.copy(MINILM / file, folder / file)
            out[name] = folder
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`bombus serve ...` in a subprocess on a free loopback port; `url`, `stop()`, `logs()`."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, timeout: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bombus-serve-{self.port}.log"
        environment = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **(env or {})}
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "bombus", "serve", "--port", str(self.port), *args],
                                        stdout=self._log, stderr=subprocess.STDOUT, env=environment)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"bombus serve exited with {self.process.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"bombus serve did not start in {timeout} s:\n{self.logs()}")
            time.sleep(0.2)

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
