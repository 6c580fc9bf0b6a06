"""Offline batch inference on Ray Data (`bombus.serving.ray`): row for row the in-process servings' results,
in input order, none lost or duplicated (also when an actor is killed mid-run), failed rows kept with their
error, clear errors for a missing column or an unreachable cluster; and the `--ray` command line."""

import json
import random
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest

import bombus.text
from bombus.cli import main
from bombus.errors import ConfigError, InputError
from bombus.serving.ray import Predictor, connect, map_batches, run_file
from ray_fixtures import kill_worker, ray, ray_cluster  # noqa: F401
from text_fixtures import NER_LABELS, NLI_LABELS, checkpoints, random_sentence  # noqa: F401

LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [random_sentence(rng, 1, 12) for _ in range(n)]


def in_process(serving, items, key):
    return [r[key] for r in serving(items)]


# ---------------------------------------------------------------------------------------------- on Ray
def test_embed_10000_rows_in_order_with_an_actor_killed(ray_cluster, checkpoints):
    c = checkpoints("bert", "base")
    texts = sentences(10_000)
    expected = np.array(in_process(bombus.text.text_embedding(c.model, c.tokenizer, batch_size=32), texts,
                                   "embedding"))
    table = pa.table({"id": range(10_000), "text": texts})
    dataset = ray.data.from_arrow([table.slice(start, 250) for start in range(0, 10_000, 250)])
    out = map_batches(dataset, "embed", str(c.folder), actors=2, num_cpus=0.5, batch_rows=250, batch_size=32)
    batches, killed, rows_then = [], None, None
    for batch in out.iter_batches(batch_format="pyarrow", batch_size=None):
        batches.append(batch)
        if killed is None:  # the first results are in: kill an actor while the others are still running
            killed = kill_worker("ray::MapWorker")
            rows_then = sum(b.num_rows for b in batches)
    assert killed is not None and rows_then < 10_000
    table = pa.concat_tables(batches)
    assert table["id"].to_pylist() == list(range(10_000))  # in order, none lost, none twice
    assert table["text"].to_pylist() == texts
    assert table["error"].null_count == 10_000
    np.testing.assert_allclose(np.array(table["embedding"].to_pylist()), expected, atol=1e-5)


def test_classify_10000_rows_of_a_csv_file(ray_cluster, checkpoints, tmp_path):
    c = checkpoints("bert", "for_sequence_classification", LABELS)
    texts = sentences(10_000, seed=1)
    texts[5] = "2024"  # a column of text that looks like a number stays text
    pyarrow.csv.write_csv(pa.table({"id": range(10_000), "text": texts}), tmp_path / "in.csv")
    summary = run_file(str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), "classify", str(c.folder),
                       progress=False, actors=1, batch_rows=500, batch_size=32)
    assert summary == {"rows": 10_000, "failed": 0, "failed_rows": []}
    out = pyarrow.csv.read_csv(tmp_path / "out.csv", convert_options=pyarrow.csv.ConvertOptions(
        column_types={"text": pa.string()}))
    assert out["id"].to_pylist() == list(range(10_000)) and out["text"].to_pylist() == texts
    expected = in_process(bombus.text.text_classification(c.model, c.tokenizer, batch_size=32), texts, "predictions")
    got = [json.loads(p) for p in out["predictions"].to_pylist()]
    assert [p[0]["label"] for p in got] == [p[0]["label"] for p in expected]
    assert [[x["label"] for x in p] for p in got] == [[x["label"] for x in p] for p in expected]
    assert max(abs(a["score"] - b["score"]) for p, q in zip(got, expected) for a, b in zip(p, q)) < 1e-5


def test_embed_command_keeps_failed_rows_with_their_error(ray_cluster, checkpoints, tmp_path, capsys):
    c = checkpoints("bert", "base")
    texts = sentences(300, seed=2)
    texts[7] = None  # no text
    texts[123] = " ".join(["word"] * 100)  # 102 tokens, more than the model's 64 positions
    pq.write_table(pa.table({"id": range(300), "text": texts}), tmp_path / "in.parquet")
    status = main(["embed", "--ray", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"),
                   "--model", str(c.folder), "--batch-size", "16"])
    err = capsys.readouterr().err
    assert status == 1 and "wrote 300 rows" in err and "2 failed (rows 7, 123" in err
    out = pq.read_table(tmp_path / "out.parquet")
    assert out["id"].to_pylist() == list(range(300))
    errors = out["error"].to_pylist()
    assert "must be a str, got NoneType" in errors[7] and "102 tokens, more than the 64" in errors[123]
    assert [i for i, e in enumerate(errors) if e is not None] == [7, 123]
    good = [i for i in range(300) if errors[i] is None]
    expected = in_process(bombus.text.text_embedding(c.model, c.tokenizer), [texts[i] for i in good], "embedding")
    got = out["embedding"].to_pylist()
    assert got[7] is None and got[123] is None
    np.testing.assert_allclose(np.array([got[i] for i in good]), np.array(expected), atol=1e-5)
    assert not list(tmp_path.glob(".*partial"))


def test_generate_command_on_a_jsonl_file(ray_cluster, checkpoints, tmp_path, capsys):
    c = checkpoints("gpt2", "for_causal_language_modeling")
    prompts = sentences(40, seed=3)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"prompt": p, "n": i}) + "\n" for i, p in enumerate(prompts)))
    status = main(["generate", "--ray", str(tmp_path / "in.jsonl"), "--text-column", "prompt", "--model",
                   str(c.folder), "--max-new-tokens", "5", "--no-progress"])
    assert status == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "in.out.jsonl").read_text().splitlines()]
    serving = bombus.text.generation(c.model, c.tokenizer, max_new_tokens=5)
    assert [r["n"] for r in rows] == list(range(40)) and [r["prompt"] for r in rows] == prompts
    assert [r["generated_text"] for r in rows] == in_process(serving, prompts, "text")
    assert [r["token_summary"]["output"] for r in rows] == [5] * 40


# ---------------------------------------------------------------------------------------------- bad input
def test_a_data_set_without_the_text_column(ray_cluster, checkpoints, tmp_path):
    c = checkpoints("bert", "base")
    dataset = ray.data.from_items([{"sentence": "a"}, {"sentence": "b"}])
    with pytest.raises(InputError, match=r"no column 'text'.*--text-column.*\['sentence'\]"):
        map_batches(dataset, "embed", str(c.folder))
    with pytest.raises(InputError, match=r"no column 'question'"):
        map_batches(dataset, "answer", str(c.folder), columns={"context": "sentence"})
    out = map_batches(dataset, "embed", str(c.folder), text_column="sentence")  # lazy: nothing runs
    assert "embedding" not in dataset.schema().names
    with pytest.raises(InputError, match="already has the column"):
        map_batches(ray.data.from_items([{"text": "a", "error": 1}]), "embed", str(c.folder))
    (tmp_path / "in.jsonl").write_text('{"sentence": "a"}\n')
    start = time.perf_counter()
    assert main(["embed", "--ray", str(tmp_path / "in.jsonl"), "--model", str(c.folder)]) == 1
    assert time.perf_counter() - start < 30 and not (tmp_path / "in.out.jsonl").exists()
    with pytest.raises(ConfigError, match=r"has 2 CPUs; 3 actor\(s\) x 1 CPU each need 3"):
        run_file(str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), "embed", str(c.folder), actors=3)
    del out


def test_unreachable_address_is_a_clear_error(capsys, tmp_path):
    for address in ("127.0.0.1:9", "ray://127.0.0.1:9"):
        with pytest.raises(ConfigError, match=rf"--address '{address}'.*nothing answers at 127.0.0.1:9.*ray start"):
            connect(address)
    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "in.parquet")
    assert main(["embed", "--ray", str(tmp_path / "in.parquet"), "--address", "ray://127.0.0.1:9",
                 "--model", "unused"]) == 1
    assert "nothing answers at 127.0.0.1:9" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not auto, HOST:PORT"):
        connect("no-port")


# ---------------------------------------------------------------------------------------------- every task
def test_predictor_runs_every_task_as_its_serving(checkpoints):
    """The actor's callable, called in-process: each task's columns equal its serving's results."""
    texts = sentences(6, seed=4)
    mlm = checkpoints("bert", "for_masked_language_modeling")
    masked = [t + " [MASK]." for t in texts]
    check(Predictor("fill-mask", str(mlm.folder), top_k=3), {"text": masked}, "predictions",
          bombus.text.fill_mask(mlm.model, mlm.tokenizer, top_k=3)(masked))
    ner = checkpoints("bert", "for_token_classification", NER_LABELS)
    check(Predictor("tag", str(ner.folder), aggregation="simple"), {"text": texts}, "entities",
          bombus.text.token_classification(ner.model, ner.tokenizer, aggregation="simple")(texts), key="entities")
    qa = checkpoints("bert", "for_question_answering")
    rows = {"question": ["who went?"] * 6, "context": texts}
    check(Predictor("answer", str(qa.folder), sequence_length=64, top_k=2), rows, "answers",
          bombus.text.question_answering(qa.model, qa.tokenizer, sequence_length=64, top_k=2)(
              [{"question": q, "context": t} for q, t in zip(rows["question"], texts)]), key="results")
    nli = checkpoints("bert", "for_sequence_classification", NLI_LABELS)
    zero = bombus.text.zero_shot_classification(nli.model, nli.tokenizer, ["art", "travel"])
    check(Predictor("zero-shot", str(nli.folder), candidate_labels=["art", "travel"]), {"text": texts},
          "predictions", zero(texts))
    own = [["a", "b", "c"]] * 3 + [["x", "y"]] * 3  # a column of per-row labels
    check(Predictor("zero-shot", str(nli.folder)), {"text": texts, "candidate_labels": own}, "predictions",
          zero([{"text": t, "candidate_labels": l} for t, l in zip(texts, own)]))
    clf = checkpoints("bert", "for_sequence_classification", LABELS)
    pairs = {"text": texts, "text_pair": texts[::-1]}
    check(Predictor("classify", str(clf.folder)), pairs, "predictions",
          bombus.text.text_classification(clf.model, clf.tokenizer)(list(zip(texts, texts[::-1]))))
    gpt = checkpoints("gpt2", "for_causal_language_modeling")
    check(Predictor("generate", str(gpt.folder), max_new_tokens=4), {"text": texts}, "generated_text",
          bombus.text.generation(gpt.model, gpt.tokenizer, max_new_tokens=4)(texts), key="text")
    with pytest.raises(ConfigError, match="unknown task 'translate'.*embed, classify"):
        Predictor("translate", str(gpt.folder))


def check(predictor, columns, column, expected, key="predictions"):
    table = predictor(pa.table(columns))
    assert table.column_names == [*columns, *[c for c, _ in predictor.task.results.values()], "error"]
    assert table["error"].null_count == table.num_rows
    got = table[column].to_pylist()
    want = [r[key] for r in expected]
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True) or _close(got, want)


def _close(a, b) -> bool:
    """Equal but for float32 rounding of scores."""
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) < 1e-5
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


def test_predictor_isolates_bad_rows_in_any_batch_format(checkpoints):
    c = checkpoints("bert", "for_sequence_classification", LABELS)
    predictor = Predictor("classify", str(c.folder), sequence_length=16)
    texts = ["fine", None, None, "word " * 40, "also fine", ""]
    table = predictor({"text": np.array(texts, dtype=object)})  # a dict of arrays, as batch_format="numpy"
    errors = table["error"].to_pylist()
    assert [e is None for e in errors] == [True, False, False, False, True, True]
    assert "got NoneType" in errors[1] and "InputError" in errors[3] and "sequence_length=[16]" in errors[3]
    expected = bombus.text.text_classification(c.model, c.tokenizer, sequence_length=16)(["fine", "also fine", ""])
    got = table["predictions"].to_pylist()
    assert _close([got[0], got[4], got[5]], [r["predictions"] for r in expected]) and got[1] is None
    import pandas

    frame = predictor(pandas.DataFrame({"text": ["fine", "also fine"]}))
    assert frame.num_rows == 2 and frame["error"].null_count == 2
