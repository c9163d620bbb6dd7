"""Tests of the streaming reservoir (FIFO / FIRO / reservoir policies, watermark, back-pressure)."""

from __future__ import annotations

import collections
import io
import logging
import pickle
import threading
from typing import Any

import numpy as np
import pytest
import torch

from pdebench.data.reservoir import Reservoir, ReservoirClosed, ReservoirConfig, is_finite_sample

JOIN_S = 5.0  # generous upper bound for a thread that must finish; never reached when correct
BLOCKED_S = 0.1  # how long a thread that must stay blocked is given to (wrongly) finish


def sample(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((3,), float(i)), torch.full((2,), -float(i))


class Worker(threading.Thread):
    """Runs ``fn`` in a daemon thread and keeps its result or exception."""

    def __init__(self, fn: Any) -> None:
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc


def start(fn: Any) -> Worker:
    w = Worker(fn)
    w.start()
    return w


def drain(r: Reservoir) -> list[Any]:
    return [sid for _, sid in r]


def check_invariants(r: Reservoir) -> dict[str, Any]:
    s = r.stats()
    assert s["received"] == s["resident"] + s["evicted"] + s["removed"]
    assert s["offered"] == s["received"] + s["dropped"] + s["rejected"]
    assert s["resident"] <= s["capacity"] == r.capacity
    assert sum(s["times_seen_histogram"].values()) == s["resident"] + s["evicted"]
    assert sum(s["resident_times_seen_histogram"].values()) == s["resident"]
    assert sum(s["evicted_times_seen_histogram"].values()) == s["evicted"]
    if s["policy"] != "reservoir":
        assert s["consumed"] == s["removed"]
    return s


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"capacity": 0}, ValueError, "capacity must be >= 1, got 0"),
        ({"capacity": 4, "watermark": 5}, ValueError, "watermark=5 exceeds capacity=4"),
        ({"capacity": 4, "watermark": 0}, ValueError, "watermark must be >= 1, got 0"),
        ({"capacity": 4, "policy": "lifo"}, ValueError, "'lifo'"),
        ({"capacity": 2.5}, TypeError, "capacity must be an int, got 2.5"),
        ({"capacity": True}, TypeError, "capacity must be an int"),
        ({"capacity": 4, "seed": "x"}, TypeError, "seed must be an int"),
    ],
)
def test_bad_config(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        ReservoirConfig(**kwargs)
    with pytest.raises(exc, match=match):
        Reservoir(**kwargs)


def test_config_or_kwargs_not_both() -> None:
    with pytest.raises(TypeError, match="not both"):
        Reservoir(ReservoirConfig(capacity=2), capacity=3)
    r = Reservoir(ReservoirConfig(capacity=3, policy="firo", watermark=2, seed=7))
    assert (r.capacity, r.policy, r.config.watermark) == (3, "firo", 2)
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        r.get(timeout=-1)


# ---------------------------------------------------------------------------- fifo


def test_fifo_order_each_once() -> None:
    r = Reservoir(capacity=8)
    for i in range(5):
        assert r.put(sample(i), (0, i))
    assert len(r) == 5
    got = [r.get() for _ in range(5)]
    assert [sid for _, sid in got] == [(0, i) for i in range(5)]
    for i, (s, _) in enumerate(got):
        assert torch.equal(s[0], sample(i)[0])
    with pytest.raises(TimeoutError):
        r.get(timeout=0.01)
    with pytest.raises(TimeoutError):
        r.get(block=False)
    r.close()
    with pytest.raises(ReservoirClosed):
        r.get()
    s = check_invariants(r)
    assert (s["received"], s["consumed"], s["resident"], s["evicted"]) == (5, 5, 0, 0)


def test_fifo_put_blocks_until_get_frees_room() -> None:
    r = Reservoir(capacity=2)
    assert r.put(sample(0), 0) and r.put(sample(1), 1)
    producer = start(lambda: r.put(sample(2), 2))
    producer.join(BLOCKED_S)
    assert producer.is_alive(), "put on a full fifo must block"
    assert len(r) == 2
    assert r.get()[1] == 0
    producer.join(JOIN_S)
    assert not producer.is_alive() and producer.error is None and producer.result is True
    assert drain_n(r, 2) == [1, 2]
    s = check_invariants(r)
    assert s["put_wait_s"] > 0 and s["rejected"] == 0


def drain_n(r: Reservoir, n: int) -> list[Any]:
    return [r.get()[1] for _ in range(n)]


def test_fifo_put_timeout_rejects() -> None:
    r = Reservoir(capacity=1)
    assert r.put(sample(0), 0)
    assert r.put(sample(1), 1, timeout=0.02) is False
    assert r.put(sample(2), 2, block=False) is False
    s = check_invariants(r)
    assert s["rejected"] == 2 and s["resident"] == 1 and s["received"] == 1
    r.close()
    assert drain(r) == [0]


def test_close_wakes_blocked_producer_and_put_after_close_raises() -> None:
    r = Reservoir(capacity=1)
    r.put(sample(0), 0)
    producer = start(lambda: r.put(sample(1), 1))
    producer.join(BLOCKED_S)
    assert producer.is_alive()
    r.close()
    producer.join(JOIN_S)
    assert isinstance(producer.error, ReservoirClosed)
    with pytest.raises(ReservoirClosed):
        r.put(sample(2), 2)
    assert r.closed and drain(r) == [0]


# ---------------------------------------------------------------------------- firo


def test_firo_bounded_and_evicts() -> None:
    r = Reservoir(capacity=4, policy="firo", seed=3)
    for i in range(20):
        assert r.put(sample(i), i, block=False)  # firo never blocks
        assert len(r) <= 4
    s = check_invariants(r)
    assert s["resident"] == 4 and s["evicted"] == 16 and s["evicted_times_seen_histogram"] == {0: 16}
    got = [r.get()[1] for _ in range(4)]
    assert len(set(got)) == 4 and set(got) <= set(range(20))
    r.close()
    with pytest.raises(ReservoirClosed):
        r.get()
    check_invariants(r)


def test_firo_random_out_differs_from_fifo_order() -> None:
    r = Reservoir(capacity=32, policy="firo", seed=0)
    for i in range(32):
        r.put(sample(i), i)
    r.close()
    got = drain(r)
    assert sorted(got) == list(range(32)) and got != list(range(32))


# ---------------------------------------------------------------------------- reservoir


def test_reservoir_samples_with_replacement() -> None:
    r = Reservoir(capacity=2, policy="reservoir", seed=1)
    r.put(sample(0), 0)
    r.put(sample(1), 1)
    got = [r.get()[1] for _ in range(10)]
    assert len(r) == 2  # nothing removed
    assert max(collections.Counter(got).values()) >= 2  # some sample returned twice
    s = check_invariants(r)
    assert s["consumed"] == 10 and s["removed"] == 0
    assert sum(k * v for k, v in s["resident_times_seen_histogram"].items()) == 10


@pytest.mark.parametrize("seed", range(5))
def test_reservoir_evicts_most_seen_oldest_on_ties(seed: int) -> None:
    r = Reservoir(capacity=4, policy="reservoir", seed=seed)
    for i in range(4):
        r.put(sample(i), i)
    seen = collections.Counter(r.get()[1] for _ in range(6))
    most = max(seen.values())
    expected = min(i for i in range(4) if seen[i] == most)  # oldest among the most seen
    assert r.put(sample(4), 4, block=False)
    s = check_invariants(r)
    assert s["evicted"] == 1 and s["evicted_times_seen_histogram"] == {most: 1}
    state = r.state_dict()
    assert expected not in state["sample_ids"] and 4 in state["sample_ids"]
    assert state["times_seen"][-1] == 0


def test_reservoir_blocks_when_full_and_nothing_seen() -> None:
    r = Reservoir(capacity=2, policy="reservoir", seed=0)
    r.put(sample(0), 0)
    r.put(sample(1), 1)
    assert r.put(sample(9), 9, timeout=0.02) is False  # nothing seen yet: back-pressure
    assert r.stats()["rejected"] == 1
    producer = start(lambda: r.put(sample(2), 2))
    producer.join(BLOCKED_S)
    assert producer.is_alive(), "put must block while no resident sample has been seen"
    _, first = r.get()  # now one sample is seen once: it becomes evictable
    producer.join(JOIN_S)
    assert not producer.is_alive() and producer.result is True
    ids = r.state_dict()["sample_ids"]
    assert first not in ids and sorted(ids) == sorted({0, 1, 2} - {first})
    check_invariants(r)


def test_reservoir_drains_after_close() -> None:
    r = Reservoir(capacity=4, policy="reservoir", watermark=4, seed=2)
    for i in range(3):
        r.put(sample(i), i)
    r.close()
    got = drain(r)
    assert sorted(got) == [0, 1, 2]
    with pytest.raises(ReservoirClosed):
        r.get()
    check_invariants(r)


# ---------------------------------------------------------------------------- watermark


@pytest.mark.parametrize("policy", ["fifo", "firo", "reservoir"])
def test_watermark_then_close_drains(policy: str) -> None:
    r = Reservoir(capacity=8, policy=policy, watermark=3, seed=0)
    r.put(sample(0), 0)
    r.put(sample(1), 1)
    with pytest.raises(TimeoutError):
        r.get(timeout=0.02)
    consumer = start(r.get)
    consumer.join(BLOCKED_S)
    assert consumer.is_alive(), "get must wait below the watermark"
    r.put(sample(2), 2)
    consumer.join(JOIN_S)
    assert not consumer.is_alive() and consumer.error is None
    assert consumer.result[1] in {0, 1, 2}
    if policy == "fifo":
        assert consumer.result[1] == 0
    assert r.stats()["wait_time_s"] > 0
    # below the watermark again (fifo/firo); closing lets the rest drain
    r.close()
    rest = drain(r)
    expected = {0, 1, 2} if policy == "reservoir" else {0, 1, 2} - {consumer.result[1]}
    assert sorted(rest) == sorted(expected)
    with pytest.raises(ReservoirClosed):
        r.get()
    check_invariants(r)


def test_close_wakes_waiting_consumer() -> None:
    r = Reservoir(capacity=4, watermark=2)
    r.put(sample(0), 0)
    consumer = start(r.get)
    consumer.join(BLOCKED_S)
    assert consumer.is_alive()
    r.close()
    consumer.join(JOIN_S)
    assert consumer.result[1] == 0
    empty = start(r.get)
    empty.join(JOIN_S)
    assert isinstance(empty.error, ReservoirClosed)


# ---------------------------------------------------------------------------- non-finite


def test_non_finite_samples_dropped(caplog: pytest.LogCaptureFixture) -> None:
    r = Reservoir(capacity=8)
    good = {"x": (torch.ones(2), np.zeros(3)), "meta": "ok", "n": 3}
    bad_nested = {"x": (torch.ones(2), [torch.tensor([1.0, float("nan")])])}
    bad_numpy = (torch.ones(2), np.array([1.0, np.inf]))
    bad_float = (torch.ones(2), float("-inf"))
    bad_complex = (torch.tensor([1 + 1j, complex(float("nan"), 0)]),)
    with caplog.at_level(logging.WARNING, logger="pdebench.data.reservoir"):
        assert r.put(good, (0, 0))
        assert r.put(bad_nested, (0, 1)) is False
        assert r.put(bad_numpy, (0, 2)) is False
        assert r.put(bad_float, (0, 3)) is False
        assert r.put(bad_complex, (0, 4)) is False
    assert "(0, 1)" in caplog.text and "non-finite" in caplog.text
    s = check_invariants(r)
    assert s["dropped"] == 4 and s["received"] == 1 and s["resident"] == 1
    r.close()
    assert drain(r) == [(0, 0)]
    assert is_finite_sample((torch.arange(3), np.arange(3), None, "s"))


# ---------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("policy", ["fifo", "firo", "reservoir"])
def test_stats_consistent(policy: str) -> None:
    r = Reservoir(capacity=5, policy=policy, watermark=2, seed=4)
    rng = np.random.default_rng(0)
    for i in range(60):
        if rng.random() < 0.6:
            x = torch.tensor([float("nan")]) if i % 11 == 0 else torch.tensor([float(i)])
            r.put((x,), i, block=False)
        else:
            try:
                r.get(block=False)
            except TimeoutError:
                pass
        check_invariants(r)
    s = r.stats()
    assert s["dropped"] > 0 and s["policy"] == policy and s["capacity"] == 5
    assert set(s) >= {
        "received", "consumed", "evicted", "dropped", "rejected", "resident", "capacity", "policy",
        "times_seen_histogram", "wait_time_s", "put_wait_s",
    }  # fmt: skip
    if policy == "fifo":
        assert s["evicted"] == 0
    if policy == "firo":
        assert s["rejected"] == 0


# ---------------------------------------------------------------------------- checkpointing


@pytest.mark.parametrize("policy", ["firo", "reservoir"])
def test_state_dict_round_trip_continues_identically(policy: str) -> None:
    cfg = ReservoirConfig(capacity=6, policy=policy, watermark=2, seed=11)
    a = Reservoir(cfg)
    for i in range(6):
        a.put(sample(i), (11, i))
    for _ in range(3):
        a.get()
    for i in range(6, 8):  # full: firo evicts at random, reservoir evicts the most seen
        assert a.put(sample(i), (11, i), block=False)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    b = Reservoir(cfg)
    b.load_state_dict(state)
    assert b.stats() == a.stats()
    assert pickle.loads(pickle.dumps(a.state_dict()))["sample_ids"] == state["sample_ids"]

    def script(r: Reservoir) -> list[Any]:
        out = []
        for i in range(8, 20):
            r.put(sample(i), (11, i), block=False)
            s, sid = r.get()
            out.append(sid)
            assert torch.equal(s[0], sample(sid[1])[0])
        r.close()
        return out + drain(r)

    assert script(a) == script(b)
    assert a.stats() == b.stats()


def test_load_state_dict_validates() -> None:
    a = Reservoir(capacity=4, policy="firo")
    for i in range(4):
        a.put(sample(i), i)
    with pytest.raises(ValueError, match="policy 'firo'"):
        Reservoir(capacity=4, policy="fifo").load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="4 samples, more than capacity=2"):
        Reservoir(capacity=2, policy="firo").load_state_dict(a.state_dict())


# ---------------------------------------------------------------------------- stress


def test_multi_producer_stress_fifo_exactly_once() -> None:
    n_producers, per_producer = 4, 200
    r = Reservoir(capacity=16, policy="fifo", watermark=4)
    received: list[Any] = []

    def produce(p: int) -> None:
        for i in range(per_producer):
            assert r.put((torch.tensor([float(p), float(i)]),), (p, i))

    def consume() -> None:
        for s, sid in r:
            assert s[0].tolist() == [float(sid[0]), float(sid[1])]
            received.append(sid)

    consumer = start(consume)
    producers = [start(lambda p=p: produce(p)) for p in range(n_producers)]
    for w in producers:
        w.join(JOIN_S)
        assert not w.is_alive() and w.error is None
    r.close()
    consumer.join(JOIN_S)
    assert not consumer.is_alive() and consumer.error is None
    assert len(received) == n_producers * per_producer
    assert set(received) == {(p, i) for p in range(n_producers) for i in range(per_producer)}
    for p in range(n_producers):  # fifo keeps each producer's order
        assert [i for q, i in received if q == p] == list(range(per_producer))
    s = check_invariants(r)
    assert s["received"] == s["consumed"] == 800 and s["resident"] == 0 and s["evicted"] == 0
