"""Tokenizers for every bombus family, built on the `tokenizers` library.

`load_tokenizer(source)` reads whichever files a repository ships — `tokenizer.json`, or the older "slow"
files (`vocab.json` + `merges.txt` or OpenAI's `encoder.json` + `vocab.bpe`, `vocab.txt`, `spiece.model`) —
plus `tokenizer_config.json`, `special_tokens_map.json` and `added_tokens.json`, and gives the same ids as
transformers' tokenizers for GPT-2, RoBERTa, DistilBERT, BERT and ALBERT.

Like transformers 5, a family's pipeline (normalizer, pre-tokenizer, decoder, post-processor) is built from
its options; the files only provide the vocabulary (and `tokenizer.json` its post-processor). That is why
a `tokenizer.json` and the slow files of the same tokenizer load to the same thing.

Modules: `families` (what each family defaults to), `files` (finding a source's files, which family),
`special_tokens` (reading and registering special and added tokens), `vocab` (the vocabulary model from
tokenizer.json or the slow files), `pipeline` (normalizer, pre-tokenizer, decoder, post-processor),
`loading` (`load_tokenizer`), `tokenizer` (the `Tokenizer` class and the checks of its inputs),
`byte_level` (GPT-2's byte alphabet).
"""

from .loading import load_tokenizer
from .tokenizer import Tokenizer

__all__ = ["Tokenizer", "load_tokenizer"]
