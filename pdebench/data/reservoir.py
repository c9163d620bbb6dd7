"""A bounded, thread-safe streaming buffer between data-generation producers and a trainer.

This is the server-side buffer of the Melissa online-training design: solver workers stream samples
into the reservoir (:meth:`Reservoir.put`), the training loop pulls from it (:meth:`Reservoir.get`),
training starts once ``watermark`` samples are resident, and memory stays bounded by ``capacity``.

Three policies decide what happens when the buffer is full and what a ``get`` returns:

``"fifo"``
    ``put`` blocks (back-pressure: producers wait instead of growing memory) until a ``get`` frees
    room; ``get`` removes and returns the oldest sample. Every sample is seen exactly once.
``"firo"`` (first in, random out)
    ``put`` never blocks: it evicts a uniformly random resident sample; ``get`` removes and returns a
    uniformly random resident sample.
``"reservoir"``
    ``get`` returns a uniformly random resident sample *without removing it* (sampling with
    replacement) and increments its times-seen count; ``put`` on a full buffer evicts the resident
    sample seen most often (ties: the oldest), considering only samples seen at least once. If no
    resident sample has been seen yet, ``put`` blocks like ``"fifo"`` until one has.

After :meth:`Reservoir.close` (no more producers), ``get`` ignores the watermark and drains what is
left: ``"fifo"`` in order, ``"firo"`` and ``"reservoir"`` by uniformly random draws that now *remove*
the sample, so every policy ends: once nothing is resident, ``get`` raises :class:`ReservoirClosed`.

Samples are arbitrary Python objects, typically ``((x, y), ...)`` tuples of tensors; each has an id,
by convention ``(seed, index)`` (see DESIGN.md, *Determinism*). A sample containing any non-finite
value (in any torch tensor, numpy array or float found inside tuples, lists, dicts or dataclasses)
is dropped, counted and logged, never buffered.

Keep one reservoir per trainer process (``DataLoader(num_workers=0)``) and fill it from a thread:
a reservoir inside a DataLoader worker would be copied per worker, not shared.

Examples
--------
>>> import torch
>>> r = Reservoir(capacity=4, policy="fifo", watermark=2)
>>> r.put((torch.zeros(3), torch.ones(3)), sample_id=(0, 0))
True
>>> r.put((torch.ones(3), torch.zeros(3)), sample_id=(0, 1))
True
>>> _, sid = r.get()
>>> sid
(0, 0)
>>> r.close()
>>> r.get()[1]
(0, 1)
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import random
import threading
import time
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch

__all__ = ["Policy", "Reservoir", "ReservoirClosed", "ReservoirConfig", "is_finite_sample"]

logger = logging.getLogger(__name__)

Policy = Literal["fifo", "firo", "reservoir"]
_POLICIES: tuple[str, ...] = get_args(Policy)
_STATE_VERSION = 1


class ReservoirClosed(RuntimeError):
    """Raised by :meth:`Reservoir.get` when the reservoir is closed and empty, and by
    :meth:`Reservoir.put` when the reservoir is closed."""


@dataclass(frozen=True)
class ReservoirConfig:
    """Settings of a :class:`Reservoir`.

    Parameters
    ----------
    capacity : int
        Maximum number of resident samples, ``>= 1``.
    policy : {"fifo", "firo", "reservoir"}
        What ``put`` does when full and what ``get`` returns (see the module docstring).
    watermark : int
        ``get`` waits until at least this many samples are resident (unless the reservoir is
        closed); ``1 <= watermark <= capacity``.
    seed : int
        Seed of the reservoir's own random generator (random eviction and random draws).

    Raises
    ------
    ValueError
        If a value is out of range or ``policy`` is unknown; the message names the bad value.
    TypeError
        If an integer setting is not an ``int``.
    """

    capacity: int
    policy: Policy = "fifo"
    watermark: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("capacity", "watermark", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"ReservoirConfig.{name} must be an int, got {value!r} ({type(value).__name__})")
        if self.capacity < 1:
            raise ValueError(f"ReservoirConfig.capacity must be >= 1, got {self.capacity!r}")
        if self.policy not in _POLICIES:
            raise ValueError(f"ReservoirConfig.policy must be one of {list(_POLICIES)}, got {self.policy!r}")
        if self.watermark < 1:
            raise ValueError(f"ReservoirConfig.watermark must be >= 1, got {self.watermark!r}")
        if self.watermark > self.capacity:
            raise ValueError(
                f"ReservoirConfig.watermark={self.watermark!r} exceeds capacity={self.capacity!r}: "
                "get() would wait forever; expected 1 <= watermark <= capacity"
            )


def is_finite_sample(sample: Any) -> bool:
    """Whether every numeric value inside ``sample`` is finite.

    Recurses into tuples, lists, dicts (values) and dataclass instances; checks torch tensors
    (floating and complex), numpy arrays of numeric dtype and Python/numpy floats and complexes.
    Other objects (ints, strings, ``None``, ...) count as finite.

    Parameters
    ----------
    sample : Any
        The object to check.

    Returns
    -------
    bool
        ``False`` if any NaN or infinity was found.
    """
    if isinstance(sample, torch.Tensor):
        if sample.is_floating_point() or sample.is_complex():
            return bool(torch.isfinite(sample).all())
        return True
    if isinstance(sample, np.ndarray):
        if sample.dtype.kind in "fc":
            return bool(np.isfinite(sample).all())
        if sample.dtype.kind == "O":
            return all(is_finite_sample(v) for v in sample.flat)
        return True
    if isinstance(sample, (float, np.floating)):
        return math.isfinite(sample)
    if isinstance(sample, (complex, np.complexfloating)):
        return math.isfinite(sample.real) and math.isfinite(sample.imag)
    if isinstance(sample, Mapping):
        return all(is_finite_sample(v) for v in sample.values())
    if isinstance(sample, (tuple, list)):
        return all(is_finite_sample(v) for v in sample)
    if dataclasses.is_dataclass(sample) and not isinstance(sample, type):
        return all(is_finite_sample(getattr(sample, f.name)) for f in dataclasses.fields(sample))
    return True


@dataclass
class _Entry:
    """One resident sample: the object, its id, how often ``get`` returned it, arrival order."""

    sample: Any
    sample_id: Any
    times_seen: int
    seq: int


class Reservoir:
    """Bounded, thread-safe buffer of streamed samples (Melissa's server buffer).

    Parameters
    ----------
    config : ReservoirConfig, optional
        The settings. Alternatively pass the fields of :class:`ReservoirConfig` as keyword
        arguments (``Reservoir(capacity=64, policy="reservoir", watermark=16)``), not both.
    **kwargs
        Fields of :class:`ReservoirConfig` when ``config`` is not given.

    Notes
    -----
    One lock and two conditions (``not_full`` for producers, ``not_empty`` for consumers) guard all
    state; nobody busy-waits. Eviction and random removal are ``O(capacity)`` list operations, which
    is negligible next to producing a PDE sample for capacities up to ~1e5.

    Counters (see :meth:`stats`) satisfy, at any moment,
    ``received == resident + evicted + removed`` where ``removed`` counts samples taken out by
    ``get`` (``removed == consumed`` for fifo/firo), and
    ``offered == received + dropped + rejected`` counting every ``put`` call that did not raise.
    """

    def __init__(self, config: ReservoirConfig | None = None, **kwargs: Any) -> None:
        if config is None:
            config = ReservoirConfig(**kwargs)
        elif kwargs:
            raise TypeError(f"pass either a ReservoirConfig or keyword arguments, not both (got {sorted(kwargs)})")
        elif not isinstance(config, ReservoirConfig):
            raise TypeError(f"config must be a ReservoirConfig, got {type(config).__name__}")
        self.config = config
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._not_empty = threading.Condition(self._lock)
        self._entries: list[_Entry] = []
        self._closed = False
        self._next_seq = 0
        self._counters: dict[str, int] = dict.fromkeys(
            ("offered", "received", "consumed", "removed", "evicted", "dropped", "rejected"), 0
        )
        self._evicted_seen: collections.Counter[int] = collections.Counter()
        self._wait_time_s = 0.0
        self._put_wait_s = 0.0

    # ------------------------------------------------------------------ properties
    @property
    def capacity(self) -> int:
        """Maximum number of resident samples."""
        return self.config.capacity

    @property
    def policy(self) -> str:
        """The buffer policy, ``"fifo"``, ``"firo"`` or ``"reservoir"``."""
        return self.config.policy

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        with self._lock:
            return self._closed

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Reservoir(capacity={c.capacity}, policy={c.policy!r}, watermark={c.watermark}, "
            f"resident={len(self)}, closed={self.closed})"
        )

    # ------------------------------------------------------------------ producer side
    def put(
        self, sample: Any, sample_id: Hashable | None = None, *, block: bool = True, timeout: float | None = None
    ) -> bool:
        """Offer one sample to the reservoir.

        Parameters
        ----------
        sample : Any
            The sample, typically a tuple of tensors ``(x, y)``. It is stored by reference.
        sample_id : hashable, optional
            Its id, by convention ``(seed, index)``; defaults to the number of ``put`` calls so far.
        block : bool
            Whether to wait for room when the policy needs to (``"fifo"``, and ``"reservoir"`` while
            no resident sample has been seen). ``False`` behaves like ``timeout=0``.
        timeout : float, optional
            Longest wait in seconds; ``None`` waits as long as needed.

        Returns
        -------
        bool
            ``True`` if the sample is now resident; ``False`` if it was dropped (non-finite values,
            counted in ``dropped``) or no room came in time (counted in ``rejected``).

        Raises
        ------
        ReservoirClosed
            If the reservoir is closed, also when it gets closed while this call waits.
        ValueError
            If ``timeout`` is negative.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
        finite = is_finite_sample(sample)  # outside the lock: may touch large tensors
        with self._lock:
            if self._closed:
                raise ReservoirClosed(f"put({sample_id!r}) on a closed reservoir")
            if sample_id is None:
                sample_id = self._counters["offered"]
            self._counters["offered"] += 1
            if not finite:
                self._counters["dropped"] += 1
                logger.warning("reservoir: dropped sample %r: it contains non-finite values", sample_id)
                return False
            if not self._make_room(sample_id, block=block, timeout=timeout):
                self._counters["rejected"] += 1
                logger.debug("reservoir: rejected sample %r: full and no room in time", sample_id)
                return False
            self._entries.append(_Entry(sample, sample_id, 0, self._next_seq))
            self._next_seq += 1
            self._counters["received"] += 1
            self._not_empty.notify_all()  # several consumers may wait on the watermark
            return True

    def _make_room(self, sample_id: Any, *, block: bool, timeout: float | None) -> bool:
        """With the lock held: ensure a free slot, evicting or waiting as the policy says."""
        capacity, policy = self.config.capacity, self.config.policy
        deadline = None if timeout is None else time.monotonic() + timeout
        started: float | None = None
        try:
            while len(self._entries) >= capacity:
                if policy == "firo":
                    self._evict(self._rng.randrange(len(self._entries)))
                    return True
                if policy == "reservoir":
                    index = self._most_seen_index()
                    if index is not None:
                        self._evict(index)
                        return True
                # fifo, or reservoir with nothing seen yet: back-pressure
                remaining = None if deadline is None else deadline - time.monotonic()
                if not block or (remaining is not None and remaining <= 0):
                    return False
                if started is None:
                    started = time.monotonic()
                self._not_full.wait(remaining)
                if self._closed:
                    raise ReservoirClosed(f"reservoir closed while put({sample_id!r}) waited for room")
            return True
        finally:
            if started is not None:
                self._put_wait_s += time.monotonic() - started

    def _most_seen_index(self) -> int | None:
        """Index of the resident sample seen most often (ties: oldest), among those seen at least once."""
        best, best_seen = None, 0
        for i, entry in enumerate(self._entries):  # entries are in arrival order: strict > keeps the oldest
            if entry.times_seen > best_seen:
                best, best_seen = i, entry.times_seen
        return best

    def _evict(self, index: int) -> None:
        entry = self._entries.pop(index)
        self._counters["evicted"] += 1
        self._evicted_seen[entry.times_seen] += 1
        logger.debug("reservoir: evicted sample %r (seen %d times)", entry.sample_id, entry.times_seen)

    # ------------------------------------------------------------------ consumer side
    def get(self, *, block: bool = True, timeout: float | None = None) -> tuple[Any, Any]:
        """Take one sample for training.

        Waits while fewer than ``watermark`` samples are resident and the reservoir is open. Then
        ``"fifo"`` removes and returns the oldest sample, ``"firo"`` removes and returns a uniformly
        random one, ``"reservoir"`` returns a uniformly random one without removing it and counts
        it as seen. After :meth:`close` the watermark no longer applies and every policy removes
        what it returns (``"reservoir"`` drains by random draws).

        Parameters
        ----------
        block : bool
            Whether to wait; ``False`` behaves like ``timeout=0``.
        timeout : float, optional
            Longest wait in seconds; ``None`` waits as long as needed.

        Returns
        -------
        tuple
            ``(sample, sample_id)``.

        Raises
        ------
        ReservoirClosed
            If the reservoir is closed and empty.
        TimeoutError
            If no sample could be returned within ``timeout`` (or at once, with ``block=False``).
        ValueError
            If ``timeout`` is negative.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
        watermark = self.config.watermark
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            started: float | None = None
            try:
                while not self._closed and len(self._entries) < watermark:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if not block or (remaining is not None and remaining <= 0):
                        raise TimeoutError(
                            f"reservoir: {len(self._entries)} resident < watermark {watermark} "
                            f"after waiting {timeout if block else 0} s"
                        )
                    if started is None:
                        started = time.monotonic()
                    self._not_empty.wait(remaining)
            finally:
                if started is not None:
                    self._wait_time_s += time.monotonic() - started
            if not self._entries:
                raise ReservoirClosed("reservoir is closed and empty")
            policy = self.config.policy
            if policy == "fifo":
                entry = self._entries.pop(0)
                self._counters["removed"] += 1
            elif policy == "firo" or self._closed:
                entry = self._entries.pop(self._rng.randrange(len(self._entries)))
                self._counters["removed"] += 1
            else:  # reservoir, open: sample with replacement
                entry = self._entries[self._rng.randrange(len(self._entries))]
            entry.times_seen += 1
            self._counters["consumed"] += 1
            # room was freed (fifo/firo/drain) or a sample became evictable (reservoir)
            self._not_full.notify_all()
            return entry.sample, entry.sample_id

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """Yield ``(sample, sample_id)`` from :meth:`get` until the reservoir is closed and drained."""
        while True:
            try:
                yield self.get()
            except ReservoirClosed:
                return

    def close(self) -> None:
        """Declare that no more samples will come.

        Blocked producers raise :class:`ReservoirClosed`; consumers stop waiting for the watermark and
        drain what is resident, then get :class:`ReservoirClosed`. Closing twice is harmless.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                logger.info("reservoir closed with %d resident samples", len(self._entries))
            self._not_full.notify_all()
            self._not_empty.notify_all()

    # ------------------------------------------------------------------ statistics
    def stats(self) -> dict[str, Any]:
        """A consistent snapshot of the counters.

        Returns
        -------
        dict
            ``offered`` (put calls), ``received`` (samples made resident), ``consumed`` (samples
            returned by ``get``, with repeats), ``removed`` (samples taken out by ``get``),
            ``evicted``, ``dropped`` (non-finite), ``rejected`` (no room in time), ``resident``,
            ``capacity``, ``policy``, ``watermark``, ``closed``,
            ``times_seen_histogram`` (times seen -> number of samples, over resident and evicted
            samples), ``resident_times_seen_histogram``, ``evicted_times_seen_histogram``,
            ``wait_time_s`` (total time consumers waited in ``get``) and ``put_wait_s`` (total time
            producers were blocked in ``put``).
        """
        with self._lock:
            resident_hist = collections.Counter(e.times_seen for e in self._entries)
            total = resident_hist + self._evicted_seen
            return {
                **self._counters,
                "resident": len(self._entries),
                "capacity": self.config.capacity,
                "policy": self.config.policy,
                "watermark": self.config.watermark,
                "closed": self._closed,
                "times_seen_histogram": dict(sorted(total.items())),
                "resident_times_seen_histogram": dict(sorted(resident_hist.items())),
                "evicted_times_seen_histogram": dict(sorted(self._evicted_seen.items())),
                "wait_time_s": self._wait_time_s,
                "put_wait_s": self._put_wait_s,
            }

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the same stream after a restart.

        Returns
        -------
        dict
            Plain containers (lists, dicts, tuples, ints, floats, strings) plus the samples
            themselves, stored by reference; picklable and :func:`torch.save`-able. Keys:
            ``version``, ``config``, ``samples``, ``sample_ids``, ``times_seen``, ``counters``,
            ``evicted_times_seen``, ``wait_time_s``, ``put_wait_s``, ``rng_state``, ``closed``.
        """
        with self._lock:
            return {
                "version": _STATE_VERSION,
                "config": dataclasses.asdict(self.config),
                "samples": [e.sample for e in self._entries],
                "sample_ids": [e.sample_id for e in self._entries],
                "times_seen": [e.times_seen for e in self._entries],
                "counters": dict(self._counters),
                "evicted_times_seen": dict(self._evicted_seen),
                "wait_time_s": self._wait_time_s,
                "put_wait_s": self._put_wait_s,
                "rng_state": self._rng.getstate(),
                "closed": self._closed,
            }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`, replacing the resident samples, counters and RNG state.

        The reservoir keeps its own configuration (a resumed run may change the watermark, say) but
        the policy must match and the capacity must hold the saved samples. The closed flag is not
        restored: a resumed run has new producers.

        Raises
        ------
        ValueError
            If the state has an unknown version, another policy, more samples than ``capacity`` or
            inconsistent lengths.
        """
        version = state.get("version")
        if version != _STATE_VERSION:
            raise ValueError(f"unsupported reservoir state version {version!r}, expected {_STATE_VERSION}")
        saved_policy = state["config"]["policy"]
        if saved_policy != self.config.policy:
            raise ValueError(
                f"state was saved with policy {saved_policy!r}, this reservoir uses {self.config.policy!r}"
            )
        samples, ids, seen = list(state["samples"]), list(state["sample_ids"]), list(state["times_seen"])
        if not len(samples) == len(ids) == len(seen):
            raise ValueError(
                f"inconsistent state: {len(samples)} samples, {len(ids)} sample_ids, {len(seen)} times_seen"
            )
        if len(samples) > self.config.capacity:
            raise ValueError(f"state holds {len(samples)} samples, more than capacity={self.config.capacity}")
        rng_state = state["rng_state"]
        if isinstance(rng_state, list):  # tolerate serialisers that turn tuples into lists
            rng_state = (rng_state[0], tuple(rng_state[1]), rng_state[2])
        with self._lock:
            self._entries = [
                _Entry(s, tuple(i) if isinstance(i, list) else i, int(n), k)
                for k, (s, i, n) in enumerate(zip(samples, ids, seen, strict=True))
            ]
            self._next_seq = len(self._entries)
            self._counters = {k: int(state["counters"].get(k, 0)) for k in self._counters}
            self._evicted_seen = collections.Counter({int(k): int(v) for k, v in state["evicted_times_seen"].items()})
            self._wait_time_s = float(state["wait_time_s"])
            self._put_wait_s = float(state["put_wait_s"])
            self._rng.setstate(rng_state)
            self._not_empty.notify_all()
            self._not_full.notify_all()
