"""Worker pools on both backends: id accounting after a kill, and the Ray backend with 2 local actors."""

from __future__ import annotations

import numpy as np
import psutil
import pytest

from pdebench.data.generate import build_solver, solve_samples
from pdebench.data.workers import WorkerConfig, make_worker_pool
from pdebench.problems import PROBLEMS

# Ray clusters are heavy: every test module that starts one runs on the same xdist worker (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("ray")

SMALL = {"nx": 64, "n_out": 4}


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    """One local Ray (2 CPUs, no dashboard, auth off, temp dir under pytest's tmp path) for the module."""
    ray = pytest.importorskip("ray")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")), logging_level="WARNING")
    yield ray
    ray.shutdown()
    mp.undo()


# Runs first: it needs a process without a Ray session (the module fixture below starts one).
def test_ray_pool_started_here_shuts_ray_down_and_leaves_no_process(tmp_path_factory, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray session is already running in this process")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    config = WorkerConfig("burgers1d", SMALL, batch_size=2)
    temp_dir = str(tmp_path_factory.mktemp("r"))  # short: Ray's AF_UNIX socket paths are limited to 107 bytes
    pool = make_worker_pool(config, "ray", num_workers=1, init_args={"num_cpus": 1, "_temp_dir": temp_dir})
    earlier = {p.pid for p in psutil.Process().children(recursive=True)}  # e.g. multiprocessing's resource tracker
    pool.start()
    next(pool.batches())
    before = {p.pid for p in psutil.Process().children(recursive=True)} - earlier
    assert before
    pool.stop()
    assert not ray.is_initialized()
    psutil.wait_procs([psutil.Process(pid) for pid in before if psutil.pid_exists(pid)], timeout=10)
    alive = [pid for pid in before if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive


def _collect(pool, kill_after: int | None = None):
    ids = []
    for i, batch in enumerate(pool.batches()):
        ids += [tuple(map(int, row)) for row in batch.sample_ids]
        if i == kill_after:
            pool.kill_worker(pool.workers[0])
    return ids


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_killed_worker_loses_exactly_its_block_by_id_and_nothing_repeats(backend, request):
    if backend == "ray":
        request.getfixturevalue("ray_session")
    config = WorkerConfig("burgers1d", SMALL, seed=3, batch_size=3, max_samples=36)
    with make_worker_pool(config, backend, num_workers=2) as pool:
        ids = _collect(pool, kill_after=1)
        lost, restarts, cursor = pool.lost_ids, pool.restarts, pool.cursor
    assert restarts == 1
    assert len(ids) == len(set(ids)), "an id was delivered twice"
    assert not set(ids) & set(lost)
    assert sorted(ids + lost) == [(3, i) for i in range(36)], "every id is consumed or reported lost"
    assert 1 <= len(lost) <= 3 and cursor == 12


def test_ray_backend_streams_the_solvers_values_with_two_local_actors(ray_session):
    config = WorkerConfig("burgers1d", SMALL, seed=7, batch_size=4, max_samples=16)
    got, workers = {}, set()
    with make_worker_pool(config, "ray", num_workers=2) as pool:
        for batch in pool.batches():
            workers.add(batch.worker)
            for row, (seed, index) in enumerate(batch.sample_ids):
                got[(int(seed), int(index))] = batch.fields["u"][row]
    assert sorted(got) == [(7, i) for i in range(16)]
    assert workers == {0, 1}
    problem = PROBLEMS.build("burgers1d", **SMALL)
    alone = solve_samples(problem, build_solver(problem), 7, np.array([9]))
    assert np.array_equal(got[(7, 9)], alone.fields["u"][0].float().numpy())


def test_ray_actor_that_raises_is_replaced_until_the_crash_loop_limit(ray_session):
    config = WorkerConfig("burgers1d", {"nx": 64, "n_out": 2, "nu": 0.001}, solver_args={"dt": 10.0}, batch_size=2)
    with make_worker_pool(config, "ray", num_workers=1, max_restarts=2) as pool:
        with pytest.raises(RuntimeError, match="workers died 3 times"):
            for _ in pool.batches(timeout=0.2):
                pass


def test_sharded_pools_draw_disjoint_blocks_and_resume_from_the_cursor():
    first = [WorkerConfig("burgers1d", SMALL, batch_size=2, max_samples=20, shard=r, num_shards=2) for r in range(2)]
    blocks = [[c.block(k) for k in range(6)] for c in first]
    assert blocks[0][:3] == [(0, 2), (4, 6), (8, 10)] and blocks[1][:3] == [(2, 4), (6, 8), (10, 12)]
    assert blocks[0][5] is None and blocks[1][4] == (18, 20)
    with make_worker_pool(first[1], "local", num_workers=1, cursor=3) as pool:
        ids = sorted(int(i) for batch in pool.batches() for i in batch.sample_ids[:, 1])
    assert ids == [14, 15, 18, 19]


def test_unknown_backend_and_an_address_for_local_are_refused():
    config = WorkerConfig("burgers1d", SMALL)
    with pytest.raises(ValueError, match="unknown worker backend 'slurm'; choose one of local, ray"):
        make_worker_pool(config, "slurm")
    with pytest.raises(ValueError, match="needs backend='ray'"):
        make_worker_pool(config, "local", address="ray://head:10001")


def test_a_published_feed_hands_every_batch_to_exactly_one_of_two_readers(ray_session):
    import threading

    from pdebench.data.ray_feed import RayFeed, publish

    config = WorkerConfig("burgers1d", SMALL, seed=11, batch_size=2, max_samples=12)
    published = []
    with make_worker_pool(config, "local", num_workers=1) as pool:
        publisher = threading.Thread(target=lambda: published.append(publish(pool.batches(), "test-feed", maxsize=2)))
        publisher.start()
        readers = [RayFeed("test-feed", wait=30).start() for _ in range(2)]
        got = [[], []]
        threads = [threading.Thread(target=lambda r=r, out=out: out.extend(tuple(map(int, i)) for b in r.batches() for i in b.sample_ids))
                   for r, out in zip(readers, got)]
        for t in threads:
            t.start()
        for t in [*threads, publisher]:
            t.join(60)
    assert published == [6]
    assert sorted(got[0] + got[1]) == [(11, i) for i in range(12)]
    with pytest.raises(ValueError, match="no stream feed named 'missing'"):
        RayFeed("missing", wait=0).start()


def test_online_data_module_trains_from_a_feed_without_starting_workers(ray_session):
    import threading

    from pdebench.data.online import OnlineDataModule
    from pdebench.data.ray_feed import publish

    config = WorkerConfig("burgers1d", {"nx": 64, "n_out": 1}, seed=0, batch_size=2, max_samples=8)
    dm = OnlineDataModule("burgers1d", {"nx": 64, "n_out": 1}, task="initial_to_final", backend="ray", feed="dm-feed",
                          policy="fifo", capacity=8, watermark=1, samples_per_epoch=8, batch_size=2)
    with make_worker_pool(config, "local", num_workers=1) as pool:
        publisher = threading.Thread(target=publish, args=(pool.batches(), "dm-feed"), kwargs={"maxsize": 2})
        publisher.start()
        dm.start_stream()
        ids = sorted(dm.reservoir.get(timeout=120)[1][:2] for _ in range(8))  # a liveness wait: Ray's actors start slowly on a loaded machine
        publisher.join(120)
    dm.stop_stream()
    assert ids == [(0, i) for i in range(8)]
    with pytest.raises(ValueError, match="set backend='ray'"):
        OnlineDataModule("burgers1d", feed="dm-feed")
