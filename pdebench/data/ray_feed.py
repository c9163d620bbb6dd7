"""A named Ray queue between a ``pdebench stream --feed NAME`` process and online trainers.

The stream process runs the solver workers on their own (:func:`publish`): every solved
:class:`~pdebench.data.workers.Batch` goes into a bounded queue actor named ``NAME`` (``ray.util.queue``)
on the Ray cluster, blocking while the queue is full (back-pressure: memory stays bounded). Trainers
read it with :class:`RayFeed`, which has the worker pools' interface, so ``OnlineDataModule(feed=NAME)``
trains from it unchanged. Several trainers (DDP ranks) reading one feed each get different batches:
the queue hands every batch out once. When the stream ends, an end marker goes into the queue; each
reader that takes it puts it back for the others and finishes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

NAMESPACE = "pdebench"
_END = "pdebench-stream-end"


def _ray_init(address: str | None, init_args: dict[str, Any] | None) -> bool:
    """Join (or start) Ray in the ``pdebench`` namespace; ``True`` when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, namespace=NAMESPACE, **{"include_dashboard": False, "logging_level": logging.WARNING, **(init_args or {})})
    return True


def publish(batches: Iterable[Any], name: str, maxsize: int = 8, drain_timeout: float | None = None) -> int:
    """Put every batch into a new queue actor ``name`` (in the ``pdebench`` namespace of the current
    Ray session), then the end marker, and wait until readers have taken everything.

    Returns the number of batches published. Raises ``ValueError`` if a feed of that name exists.
    """
    import ray
    from ray.util.queue import Queue

    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        pass
    else:
        raise ValueError(f"a stream feed named {name!r} already runs on this Ray cluster; choose another --feed name")
    queue = Queue(maxsize=maxsize, actor_options={"name": name, "namespace": NAMESPACE, "num_cpus": 0})
    count = 0
    try:
        for batch in batches:
            queue.put(batch)
            count += 1
        queue.put(_END)
        deadline = None if drain_timeout is None else time.monotonic() + drain_timeout
        while queue.qsize() > 1:  # at most the end marker left: drained
            if deadline is not None and time.monotonic() > deadline:
                log.warning("feed %r: %d batches were never read", name, queue.qsize() - 1)
                break
            time.sleep(0.2)
    finally:
        queue.shutdown()
    return count


class RayFeed:
    """Reads a feed that ``pdebench stream --feed NAME`` publishes; a worker pool's interface.

    Parameters
    ----------
    name
        The feed's name.
    address, init_args
        The Ray cluster (``None``: the session this process already joined, or a local one).
    wait
        Seconds to wait for the feed to appear (the stream may start after the trainer).
    """

    def __init__(self, name: str, address: str | None = None, init_args: dict[str, Any] | None = None, wait: float = 60.0) -> None:
        self.name, self.address, self.init_args, self.wait = name, address, init_args, wait
        self.cursor, self.restarts, self.dropped, self.num_workers = 0, 0, 0, 0
        self.lost_ids: list[tuple[int, int]] = []
        self._owns_ray = False
        self._stopped = False
        self._actor = None

    def start(self) -> "RayFeed":
        import ray

        self._owns_ray = _ray_init(self.address, self.init_args)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                self._actor = ray.get_actor(self.name, namespace=NAMESPACE)
                return self
            except ValueError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ValueError(f"no stream feed named {self.name!r} on the Ray cluster at {self.address or 'this machine'}; "
                                     f"start one with `pdebench stream PROBLEM -n N --backend ray --feed {self.name}`") from None
                time.sleep(0.5)

    def batches(self, timeout: float = 0.5) -> Iterator[Any]:
        import ray
        from ray.exceptions import RayActorError
        from ray.util.queue import Empty

        while not self._stopped:
            try:
                item = ray.get(self._actor.get.remote(timeout=timeout))
            except Empty:
                continue
            except RayActorError:  # the stream process ended and took its queue with it
                return
            if isinstance(item, str) and item == _END:
                self._actor.put_nowait.remote(_END)  # for the other readers
                return
            item.fields = {name: np.array(value) for name, value in item.fields.items()}  # off the object store
            self.dropped += item.dropped
            yield item

    def stop(self, grace: float = 0.0) -> None:
        import ray

        self._stopped = True
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False

    def __enter__(self) -> "RayFeed":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
