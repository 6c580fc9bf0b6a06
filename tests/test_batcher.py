"""The batching runtime: many threads, their own results, batches that really form, isolated failures."""

import threading

import pytest

from bombus.serving import Batcher


def test_many_threads_get_their_own_results_in_batches():
    seen_sizes = []

    def square_all(items):
        seen_sizes.append(len(items))
        return [x * x for x in items]

    batcher = Batcher(square_all, max_batch_size=16, timeout_ms=50)
    results = {}
    barrier = threading.Barrier(64)

    def call(i):
        barrier.wait()
        results[i] = batcher(i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i * i for i in range(64)}
    assert batcher.items_run == 64
    assert batcher.batches_run < 64 and max(seen_sizes) > 1, seen_sizes
    assert max(seen_sizes) <= 16
    batcher.close()


def test_a_failing_item_only_fails_its_caller():
    def invert_all(items):
        return [1 / x for x in items]

    batcher = Batcher(invert_all, max_batch_size=8, timeout_ms=50)
    futures = [batcher.submit(x) for x in [1, 2, 0, 4]]
    assert futures[0].result() == 1 and futures[1].result() == 0.5 and futures[3].result() == 0.25
    with pytest.raises(ZeroDivisionError):
        futures[2].result()
    assert batcher.map([5, 10]) == [0.2, 0.1]  # still serving
    batcher.close()


def test_wrong_result_count_is_an_error():
    batcher = Batcher(lambda items: items[:1], max_batch_size=4, timeout_ms=50)
    futures = [batcher.submit(i) for i in range(3)]
    outcomes = [f.exception() for f in futures]
    # one by one, each batch of one returns one result, so every caller still gets an answer
    assert outcomes == [None, None, None]
    assert [f.result() for f in futures] == [0, 1, 2]
    with pytest.raises(ValueError):
        Batcher(lambda x: x, max_batch_size=0)
