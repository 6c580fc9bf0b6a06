"""`bombus serve` end to end: the server runs in a subprocess on a free loopback port with tiny random models;
the official `openai` client talks to it (completions, chat, streaming, embeddings, errors) and plain HTTP
covers the task routes, limits, metrics and the API key. The oracles: transformers' greedy decoding, bombus'
`model.generate` for a request alone, and the Python servings."""

from __future__ import annotations

import base64
import http.client
import json
import random
import struct
import threading
import time
import urllib.error
import urllib.request

import pytest
import torch

import bombus
from server_fixtures import Server, build_models

KEY = "test-key-123"
EOS = 50256

try:
    import openai
except ImportError:  # a missing test dependency fails, it does not skip
    openai = None


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    if openai is None:
        pytest.fail("the openai client (test extra) is not installed")
    return build_models(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(models):
    args = []
    for name in ("tiny-lm", "tiny-embed", "tiny-mlm", "tiny-nli", "tiny-ner", "tiny-qa"):
        args += ["--model", str(models[name])]
    srv = Server(args + ["--max-batch-size", "8", "--max-length", "160", "--max-body-bytes", "65536"],
                 env={"BOMBUS_API_KEY": KEY})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def lm(models):
    import transformers

    folder = models["tiny-lm"]
    return (bombus.load_model(folder), bombus.load_tokenizer(folder),
            transformers.LlamaForCausalLM.from_pretrained(folder).eval())


def post(server, path: str, body, *, key: str | None = KEY, raw: bytes | None = None, headers=None):
    """(status, JSON body, headers) of a POST."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {}),
                                              **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def get(server, path: str, key: str | None = KEY):
    request = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for_log(server, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.logs():
        assert time.monotonic() < deadline, f"{text!r} not in the server log"
        time.sleep(0.05)


def greedy_alone(model, ids: list[int], max_new_tokens: int) -> list[int]:
    new = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False)[0, len(ids):].tolist()
    return new[:new.index(EOS) + 1] if EOS in new else new


# ------------------------------------------------------------------------------------------------ OpenAI API
def test_models_list_tasks(client):
    served = {m.id: m.tasks for m in client.models.list().data}
    assert served == {"tiny-lm": ["completions", "chat"], "tiny-embed": ["embeddings", "embed", "similar"],
                      "tiny-mlm": ["fill-mask"], "tiny-nli": ["classify", "zero-shot"], "tiny-ner": ["tag"],
                      "tiny-qa": ["answer"]}
    assert client.models.retrieve("tiny-qa").tasks == ["answer"]


def test_greedy_completions_equal_transformers(client, lm):
    model, tok, ref = lm
    rng = random.Random(0)
    words = "the of a river town glass music slowly seven orange quiet under".split()
    prompts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(3)]
    result = client.completions.create(model="tiny-lm", prompt=prompts, max_tokens=12, temperature=0)
    assert [c.index for c in result.choices] == [0, 1, 2]
    completion_tokens = 0
    for prompt, choice in zip(prompts, result.choices):
        ids = tok.encode(prompt)
        with torch.no_grad():
            expected = ref.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                    pad_token_id=EOS)[0, len(ids):].tolist()
        expected = expected[:expected.index(EOS) + 1] if EOS in expected else expected
        assert choice.text == tok.decode(expected)
        assert choice.finish_reason == ("stop" if expected[-1] == EOS else "length")
        completion_tokens += len(expected)
    assert result.usage.prompt_tokens == sum(len(tok.encode(p)) for p in prompts)
    assert result.usage.completion_tokens == completion_tokens
    assert result.usage.total_tokens == result.usage.prompt_tokens + completion_tokens


def test_sampling_seed_n_echo_stop(client, lm):
    model, tok, _ = lm
    prompt = "Once upon a time"
    ids = tok.encode(prompt)
    options = dict(model="tiny-lm", prompt=prompt, max_tokens=10, temperature=0.7, top_p=0.9, seed=42)
    first = client.completions.create(**options, n=2)
    again = client.completions.create(**options)
    assert again.choices[0].text == first.choices[0].text  # choice 0 of n=2 has the request's own seed
    for j, choice in enumerate(first.choices):  # choice j samples with seed + j, as generate does alone
        new = model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=True, temperature=0.7, top_p=0.9,
                             top_k=None, seed=42 + j)[0, len(ids):].tolist()
        new = new[:new.index(EOS) + 1] if EOS in new else new
        assert choice.text == tok.decode(new)
    assert first.choices[0].text != first.choices[1].text
    echoed = client.completions.create(model="tiny-lm", prompt=prompt, max_tokens=5, temperature=0, echo=True)
    plain = client.completions.create(model="tiny-lm", prompt=prompt, max_tokens=5, temperature=0)
    assert echoed.choices[0].text == prompt + plain.choices[0].text
    long = client.completions.create(model="tiny-lm", prompt=prompt, max_tokens=20, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    stop = long[8:11]
    cut = client.completions.create(model="tiny-lm", prompt=prompt, max_tokens=20, temperature=0, stop=[stop, "zzz"],
                                    extra_body={"ignore_eos": True}).choices[0]
    assert cut.text == long[:long.find(stop)] and cut.finish_reason == "stop"


def test_logprobs_equal_the_reference_distribution(client, lm):
    _, tok, ref = lm
    prompt = "A quiet river"
    result = client.completions.create(model="tiny-lm", prompt=prompt, max_tokens=6, temperature=0, logprobs=3)
    lp = result.choices[0].logprobs
    ids = tok.encode(prompt)
    new = [tok.encode(t) for t in lp.tokens]
    generated = greedy_alone(lm[0], ids, 6)
    assert "".join(lp.tokens) == tok.decode(generated, skip_special_tokens=False)
    with torch.no_grad():
        logits = ref(torch.tensor([ids + generated])).logits[0, len(ids) - 1:-1].float()
    expected = torch.log_softmax(logits, dim=-1)
    for step, token in enumerate(generated):
        assert lp.token_logprobs[step] == pytest.approx(float(expected[step, token]), abs=1e-4)
        top = lp.top_logprobs[step]
        assert len(top) == 3 and max(top.values()) == pytest.approx(lp.token_logprobs[step], abs=1e-6)
        assert sorted(top.values(), reverse=True)[2] == pytest.approx(float(expected[step].topk(3).values[2]), abs=1e-4)
    assert lp.text_offset[0] == 0 and all(b > a for a, b in zip(lp.text_offset, lp.text_offset[1:]))
    assert len(new) == len(generated)
    chat = client.chat.completions.create(model="tiny-lm", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=4, temperature=0, logprobs=True, top_logprobs=2)
    content = chat.choices[0].logprobs.content
    assert len(content) == chat.usage.completion_tokens and all(len(c.top_logprobs) == 2 for c in content)


def test_chat_and_streaming(client, lm):
    model, tok, _ = lm
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True)
    expected = greedy_alone(model, ids, 15)
    result = client.chat.completions.create(model="tiny-lm", messages=messages, max_tokens=15, temperature=0)
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == tok.decode(expected)
    assert result.usage.prompt_tokens == len(ids) and result.usage.completion_tokens == len(expected)
    chunks = list(client.chat.completions.create(model="tiny-lm", messages=messages, max_tokens=15, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == result.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [result.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == len(expected) and not chunks[-1].choices
    streamed = list(client.completions.create(model="tiny-lm", prompt="The town", max_tokens=9, temperature=0,
                                              stream=True))
    whole = client.completions.create(model="tiny-lm", prompt="The town", max_tokens=9, temperature=0)
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text
    # the raw stream ends with data: [DONE]
    connection = http.client.HTTPConnection("127.0.0.1", int(client.base_url.port), timeout=60)
    connection.request("POST", "/v1/completions", json.dumps({"model": "tiny-lm", "prompt": "x", "max_tokens": 2,
                                                              "stream": True}),
                       {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    response = connection.getresponse()
    assert response.getheader("content-type").startswith("text/event-stream")
    assert response.read().decode().rstrip().endswith("data: [DONE]")


def test_embeddings_equal_the_python_serving(client, models):
    folder = models["tiny-embed"]
    serving = bombus.text.text_embedding(bombus.load_model(folder), bombus.load_tokenizer(folder))
    texts = ["John went to Paris", "a café", "IBM's headquarters in Washington!"]
    expected = [r["embedding"] for r in serving(texts)]
    default = client.embeddings.create(model="tiny-embed", input=texts)  # the client asks for base64
    floats = client.embeddings.create(model="tiny-embed", input=texts, encoding_format="float")
    for result in (default, floats):
        assert [d.index for d in result.data] == [0, 1, 2]
        for d, e in zip(result.data, expected):
            assert d.embedding == pytest.approx(e, abs=1e-5)
    tok = bombus.load_tokenizer(folder)
    assert floats.usage.prompt_tokens == sum(len(tok.encode(t)) for t in texts) == floats.usage.total_tokens
    one = client.embeddings.create(model="tiny-embed", input="a café", encoding_format="float")
    assert one.data[0].embedding == pytest.approx(expected[1], abs=1e-5)


# ------------------------------------------------------------------------------------------------ task routes
def _close(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return isinstance(b, (int, float)) and abs(a - b) <= 1e-5 + 1e-4 * abs(b)
    return a == b


def test_task_routes_equal_the_python_servings(server, models):
    text = bombus.text
    load = lambda name: (bombus.load_model(models[name]), bombus.load_tokenizer(models[name]))  # noqa: E731
    corpus = ["dogs bark", "cats purr", "cars honk", "the river flows"]
    cases = [
        ("fill-mask", "tiny-mlm", {"inputs": ["the [MASK] is red", "we [MASK] home"], "top_k": 3},
         lambda m, t: text.fill_mask(m, t, top_k=3)(["the [MASK] is red", "we [MASK] home"])),
        ("classify", "tiny-nli", {"inputs": "what a film", "top_k": 2},
         lambda m, t: text.text_classification(m, t, top_k=2)("what a film")),
        ("tag", "tiny-ner", {"inputs": ["John went to Paris"], "aggregation": "simple"},
         lambda m, t: text.token_classification(m, t, aggregation="simple")(["John went to Paris"])),
        ("answer", "tiny-qa", {"inputs": {"question": "Where?", "context": "John went to Paris yesterday."}},
         lambda m, t: text.question_answering(m, t)({"question": "Where?",
                                                     "context": "John went to Paris yesterday."})),
        ("zero-shot", "tiny-nli", {"inputs": "the match ended", "candidate_labels": ["sport", "food"]},
         lambda m, t: text.zero_shot_classification(m, t, ["sport", "food"])("the match ended")),
        ("embed", "tiny-embed", {"inputs": ["a", "b c"], "normalize": True},
         lambda m, t: text.text_embedding(m, t, normalize=True)(["a", "b c"])),
        ("similar", "tiny-embed", {"inputs": {"query": "a cat", "corpus": corpus, "top_k": 2}},
         lambda m, t: text.semantic_search(m, t, corpus, top_k=2)("a cat")),
    ]
    for task, name, body, python in cases:
        status, answer, _ = post(server, f"/v1/{task}", body)
        assert status == 200, (task, answer)
        assert answer["model"] == name
        assert _close(answer["outputs"], python(*load(name))), task
    # no "model": the first model offering the task
    status, answer, _ = post(server, "/v1/classify", {"inputs": "fine"})
    assert status == 200 and answer["model"] == "tiny-nli"
    status, answer, _ = post(server, "/v1/classify", {"inputs": "fine", "top_k": "two"})
    assert status == 400 and "top_k" in answer["error"]["message"]
    status, answer, _ = post(server, "/v1/classify", {"inputs": "fine", "colour": 1})
    assert status == 400 and "colour" in answer["error"]["message"]
    status, answer, _ = post(server, "/v1/fill-mask", {"model": "tiny-lm", "inputs": "x"})
    assert status == 400 and "does not serve fill-mask" in answer["error"]["message"]
    status, answer, _ = post(server, "/v1/translate", {"inputs": "x"})
    assert status == 404


# ------------------------------------------------------------------------------------------------ errors
def test_errors_are_clear_json_and_the_server_goes_on(client, server):
    def fails(status, call, words):
        with pytest.raises(openai.APIStatusError) as info:
            call()
        assert info.value.status_code == status, info.value
        assert words in info.value.message, info.value.message

    create = client.completions.create
    fails(404, lambda: create(model="gpt-5", prompt="x"), "does not exist")
    fails(400, lambda: create(model="tiny-lm", prompt="x", max_tokens=500), "max_tokens to at most")
    fails(400, lambda: create(model="tiny-lm", prompt="word " * 200, max_tokens=1), "shorten the prompt")
    fails(400, lambda: create(model="tiny-lm", prompt="x", temperature=5), "temperature")
    fails(400, lambda: create(model="tiny-lm", prompt="x", frequency_penalty=0.5), "not supported")
    fails(400, lambda: create(model="tiny-lm", prompt="x", logit_bias={"5": 10}), "not supported")
    fails(400, lambda: create(model="tiny-lm", prompt="x", suffix="y"), "not supported")
    fails(400, lambda: create(model="tiny-lm", prompt=["x", 3]), "prompt")
    fails(400, lambda: create(model="tiny-lm", prompt="x", extra_body={"mirostat": 1}), "unknown field")
    fails(400, lambda: client.chat.completions.create(model="tiny-lm", messages=[{"role": "user", "content": "x"}],
                                                      tools=[{"type": "function", "function": {"name": "f"}}]),
          "not supported")
    fails(400, lambda: client.chat.completions.create(model="tiny-lm", messages=[]), "messages")
    fails(400, lambda: client.embeddings.create(model="tiny-embed", input="x", dimensions=8), "not supported")
    fails(400, lambda: client.embeddings.create(model="tiny-lm", input="x"), "does not serve embeddings")
    status, body, _ = post(server, "/v1/completions", None, raw=b'{"model": "tiny-lm", "prompt": ')
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body, _ = post(server, "/v1/completions", [1, 2])
    assert status == 400 and "JSON object" in body["error"]["message"]
    status, body, _ = post(server, "/v1/completions", {"model": "tiny-lm", "prompt": "x" * 70000})
    assert status == 413 and "65536" in body["error"]["message"]
    status, body, _ = post(server, "/v1/completions", {"model": "tiny-lm", "prompt": "x"}, key=None)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    assert get(server, "/metrics", key=None)[0] == 401
    assert get(server, "/health", key=None) == (200, json.dumps({"status": "ok", "models": [
        "tiny-lm", "tiny-embed", "tiny-mlm", "tiny-nli", "tiny-ner", "tiny-qa"]}, separators=(",", ":")))
    assert client.completions.create(model="tiny-lm", prompt="still here", max_tokens=2).choices[0].text


def test_request_ids_and_metrics(server, client):
    status, _, headers = post(server, "/v1/embeddings", {"model": "tiny-embed", "input": "x"},
                              headers={"X-Request-Id": "abc123"})
    assert status == 200 and headers["x-request-id"] == "abc123"
    wait_for_log(server, "request abc123: POST /v1/embeddings -> 200")  # written just after the response
    client.completions.create(model="tiny-lm", prompt="metrics", max_tokens=3, temperature=0)
    assert post(server, "/v1/completions", {"model": "nope", "prompt": "x"})[0] == 404
    status, text = get(server, "/metrics")
    assert 'bombus_request_errors_total{route="/v1/completions",status="404"}' in text
    assert status == 200
    for name in ("bombus_requests_total{", "bombus_request_errors_total{", "bombus_queue_depth{model=\"tiny-lm\"}",
                 "bombus_batch_size_bucket{", "bombus_tokens_per_second{", "bombus_generated_tokens_total{",
                 "bombus_request_latency_seconds_bucket{", "bombus_time_to_first_token_seconds_bucket{"):
        assert name in text, name
    assert 'bombus_batch_size_count{kind="embed",model="tiny-embed"}' in text or \
        'bombus_batch_size_count{model="tiny-embed",kind="embed"}' in text
    assert 'bombus_batch_size_count{model="tiny-lm",kind="decode"}' in text or \
        'bombus_batch_size_count{kind="decode",model="tiny-lm"}' in text
    generated = [line for line in text.splitlines()
                 if line.startswith('bombus_generated_tokens_total{model="tiny-lm"}')]
    assert float(generated[0].split()[-1]) >= 3


# ------------------------------------------------------------------------------------------------ under load
def test_concurrent_clients_get_what_they_get_alone(server, lm):
    """20 clients for a few seconds, mixing streaming and plain completions and chat with different lengths,
    some disconnecting mid-stream: no response lost, every greedy one equal to the request alone."""
    model, tok, _ = lm
    rng = random.Random(7)
    words = "the of a river town glass music slowly seven orange quiet under".split()
    pool = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 15))) for _ in range(10)]
    records, errors = [], []
    deadline = time.monotonic() + 3.0

    def one_client(seed: int) -> None:
        r = random.Random(seed)
        while time.monotonic() < deadline:
            prompt = r.choice(pool)
            max_tokens = r.randint(1, 30)
            chat = r.random() < 0.3
            stream = r.random() < 0.5
            disconnect = stream and r.random() < 0.2
            body = {"model": "tiny-lm", "max_tokens": max_tokens, "temperature": 0, "stream": stream}
            if chat:
                body["messages"] = [{"role": "user", "content": prompt}]
            else:
                body["prompt"] = prompt
            path = "/v1/chat/completions" if chat else "/v1/completions"
            try:
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                connection.request("POST", path, json.dumps(body),
                                   {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
                response = connection.getresponse()
                if response.status != 200:
                    errors.append((response.status, response.read()))
                    continue
                if not stream:
                    answer = json.loads(response.read())
                    choice = answer["choices"][0]
                    text = choice["message"]["content"] if chat else choice["text"]
                    records.append((body, text, choice["finish_reason"], answer["usage"]["completion_tokens"]))
                    continue
                text, finish, events = "", None, 0
                while True:
                    line = response.fp.readline().decode()
                    if not line:
                        break
                    if not line.startswith("data: "):
                        continue
                    if line.strip() == "data: [DONE]":
                        break
                    events += 1
                    item = json.loads(line[6:])["choices"][0]
                    text += (item["delta"].get("content") or "") if chat else item["text"]
                    finish = item["finish_reason"] or finish
                    if disconnect and events >= 2:
                        break
                connection.close()
                if disconnect and finish is None:
                    continue
                records.append((body, text, finish, None))
            except Exception as e:  # noqa: BLE001 - every failure is reported below
                errors.append(repr(e))

    threads = [threading.Thread(target=one_client, args=(rng.randrange(10 ** 6),)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(records) >= 20
    alone: dict[tuple, list[int]] = {}  # greedy is prefix-consistent: one 30-token run per prompt serves all
    for body, text, finish, completion_tokens in records:
        ids = (tok.apply_chat_template(body["messages"], add_generation_prompt=True) if "messages" in body
               else tok.encode(body["prompt"]))
        if tuple(ids) not in alone:
            alone[tuple(ids)] = greedy_alone(model, ids, 30)
        expected = alone[tuple(ids)][:body["max_tokens"]]
        assert text == tok.decode(expected), body
        assert finish == ("stop" if expected[-1] == EOS else "length")
        assert completion_tokens in (None, len(expected))
    # the slots of the clients that went away were freed: nothing is left decoding
    time.sleep(0.5)
    _, metrics = get(server, "/metrics")
    assert 'bombus_active_sequences{model="tiny-lm"} 0.0' in metrics
    assert 'bombus_queue_depth{model="tiny-lm"} 0.0' in metrics


# ------------------------------------------------------------------------------------------------ one slot
@pytest.fixture
def one_slot(models):
    srv = Server(["--model", str(models["tiny-lm"]), "--max-batch-size", "1", "--max-queue", "1",
                  "--max-length", "256"])
    yield srv
    srv.stop()


def _stream_request(port: int, max_tokens: int) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/v1/completions", json.dumps({"model": "tiny-lm", "prompt": "go", "stream": True,
                                                              "max_tokens": max_tokens, "ignore_eos": True}),
                       {"Content-Type": "application/json"})
    return connection.getresponse()


def test_disconnect_frees_the_slot_queue_full_and_graceful_shutdown(one_slot):
    srv = one_slot
    # A client that goes away mid-stream frees the only slot: the next request runs right away.
    response = _stream_request(srv.port, 250)
    assert response.status == 200
    for _ in range(3):
        response.fp.readline()
    response.close()
    started = time.monotonic()
    status, body, _ = post(srv, "/v1/completions", {"model": "tiny-lm", "prompt": "next", "max_tokens": 2}, key=None)
    assert status == 200 and body["usage"]["completion_tokens"] == 2
    assert time.monotonic() - started < 10
    wait_for_log(srv, "client went away mid-stream")
    wait_for_log(srv, "cancelled after")
    # One slot and a queue of one: a burst of requests gets some 503s with Retry-After, the others complete.
    answers: list = []
    burst = [threading.Thread(target=lambda: answers.append(post(
        srv, "/v1/completions", {"model": "tiny-lm", "prompt": "w", "max_tokens": 60, "ignore_eos": True},
        key=None))) for _ in range(6)]
    for t in burst:
        t.start()
    for t in burst:
        t.join(60)
    statuses = sorted(status for status, _, _ in answers)
    assert 503 in statuses and 200 in statuses and set(statuses) == {200, 503}, statuses
    for status, body, headers in answers:
        if status == 503:
            assert headers["retry-after"] == "1" and body["error"]["code"] == "queue_full"
        else:
            assert body["usage"]["completion_tokens"] == 60
    # Graceful shutdown: SIGTERM while a stream is in flight; it still ends with [DONE], then the server exits.
    busy = _stream_request(srv.port, 250)
    busy.fp.readline()
    srv.process.terminate()
    rest = busy.fp.read().decode()  # raw (chunked) bytes until the server closes the connection
    assert rest.rstrip().endswith("data: [DONE]\n\n\r\n0")  # the last event, then the chunked end
    assert rest.count('"finish_reason": "length"') == 1
    srv.process.wait(30)
    logs = srv.logs()
    assert "Application shutdown complete" in logs
    assert logs.index("Shutting down") < logs.rindex("finished (length) after 250 tokens"), "not in flight"


# ------------------------------------------------------------------------------------------------ real defaults
@pytest.mark.slow
def test_defaults_serve_smollm_and_minilm():
    from bombus.cli_tasks import default_model

    for task in ("generate", "embed"):
        default_model(task)  # the real files are installed (ConfigError otherwise)
    srv = Server([], timeout=300)
    try:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=120)
        assert {m.id for m in client.models.list().data} == {"SmolLM2-135M-Instruct", "all-MiniLM-L6-v2"}
        question = [{"role": "user", "content": "What is the capital of France?"}]
        answer = client.chat.completions.create(model="SmolLM2-135M-Instruct", max_tokens=12, temperature=0,
                                                messages=question)
        assert "Paris" in answer.choices[0].message.content
        vectors = client.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat", "a kitten", "tax law"],
                                           encoding_format="float").data
        dot = lambda a, b: sum(x * y for x, y in zip(a.embedding, b.embedding))  # noqa: E731 - unit vectors
        assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])
    finally:
        srv.stop()
