"""Online serving on Ray Serve (`bombus.serving.ray.serve`, `bombus serve --ray`): the `openai` client gets
from the Serve deployment what it gets from `bombus serve` (the same app under uvicorn, in this process):
greedy completions, chat, embeddings and task routes; a replica killed mid-test is replaced and the
requests after it succeed; bad settings are clear errors."""

import json
import threading
import time
import urllib.request

import numpy as np
import pytest

from bombus.cli import main
from bombus.errors import ConfigError
from ray_fixtures import kill_worker, ray, ray_cluster, workers  # noqa: F401
from server_fixtures import build_models, free_port
from text_fixtures import checkpoints  # noqa: F401

try:
    import openai
    import uvicorn
except ImportError as e:
    pytest.fail(f"the test extra is not installed ({e}): pip install -e '.[test]'", pytrace=False)

PROMPTS = ["Hello there", "Once upon a time", "The cat"]
TEXTS = ["a short text", "another one, a bit longer than the first", "x"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, checkpoints):
    lm = build_models(tmp_path_factory.mktemp("serve"), only=("tiny-lm",))["tiny-lm"]
    return [f"tiny-lm={lm}", f"tiny-embed={checkpoints('bert', 'base').folder}"]


@pytest.fixture(scope="module")
def reference(models):
    """`bombus serve`'s app under uvicorn in a thread of this process."""
    from bombus.serving.http import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(models), host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def on_ray(ray_cluster, models):
    from ray import serve

    from bombus.serving.ray.serve import run

    url = run(models, port=free_port(), replicas=1, num_cpus=0.5, health_check_period_s=1.0)
    yield url
    serve.shutdown()


def answers(url: str) -> dict:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    completions = [client.completions.create(model="tiny-lm", prompt=p, max_tokens=8, temperature=0).choices[0].text
                   for p in PROMPTS]
    chat = client.chat.completions.create(model="tiny-lm", max_tokens=6, temperature=0,
                                          messages=[{"role": "user", "content": "Hi!"}]).choices[0].message.content
    streamed = "".join(chunk.choices[0].text for chunk in client.completions.create(
        model="tiny-lm", prompt=PROMPTS[1], max_tokens=8, temperature=0, stream=True) if chunk.choices)
    embeddings = [d.embedding for d in client.embeddings.create(model="tiny-embed", input=TEXTS).data]
    request = urllib.request.Request(url + "/v1/embed", data=json.dumps({"inputs": TEXTS}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        task = json.loads(response.read())["outputs"]
    return {"completions": completions, "chat": chat, "streamed": streamed, "embeddings": embeddings, "task": task}


def same(got: dict, expected: dict) -> None:
    assert got["completions"] == expected["completions"] and all(expected["completions"])
    assert got["chat"] == expected["chat"] and got["streamed"] == expected["completions"][1]
    np.testing.assert_allclose(got["embeddings"], expected["embeddings"], atol=1e-6)
    np.testing.assert_allclose([o["embedding"] for o in got["task"]], [o["embedding"] for o in expected["task"]],
                               atol=1e-6)


def test_serve_answers_as_bombus_serve_and_replaces_a_killed_replica(on_ray, reference):
    expected = answers(reference)
    same(answers(on_ray), expected)
    killed = kill_worker("ray::ServeReplica")
    assert killed is not None
    deadline, last = time.monotonic() + 120, None
    while time.monotonic() < deadline:  # the requests fail until Serve has started a new replica
        try:
            got = answers(on_ray)
            break
        except (openai.APIError, OSError) as e:
            last = e
            time.sleep(0.5)
    else:
        pytest.fail(f"no replica answered within 120 s of the kill: {last!r}")
    same(got, expected)
    same(answers(on_ray), expected)  # and it goes on answering
    replicas = [p.pid for p in workers("ray::ServeReplica")]
    assert len(replicas) == 1 and killed not in replicas  # from a new replica


def test_serve_settings_and_address_errors(capsys):
    from bombus.serving.ray.serve import deployment

    with pytest.raises(ConfigError, match=r"unknown server option\(s\) \['max_batch'\]"):
        deployment(["unused"], max_batch=4)
    with pytest.raises(ConfigError, match="replicas must be a positive int"):
        deployment(["unused"], replicas=0)
    assert main(["serve", "--ray", "--model", "unused", "--address", "127.0.0.1:9"]) == 1
    assert "cannot reach a Ray cluster at --address '127.0.0.1:9'" in capsys.readouterr().err
    assert main(["serve", "--ray", "--replicas", "3", "--max-replicas", "2"]) == 1
    assert "--max-replicas 2 is below --replicas 3" in capsys.readouterr().err
