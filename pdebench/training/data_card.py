"""Whether a checkpoint was trained on the data it is about to be scored on: one comparison of data cards.

A data module's ``data_card()`` (stored by the training modules in ``checkpoint["pdebench"]["data"]``)
records what a model has seen. :func:`check_data_card` compares the card of a checkpoint with the card
of the data it is to be scored on — the leaderboard's task
(:func:`pdebench.evaluation.leaderboard.check_data_card`) or the data module of ``train.py
test/validate/predict`` (:class:`pdebench.training.cli.PDEBenchCLI`) — on the keys that decide what the
model computes (:func:`scored_keys`), and names the first difference.
"""

from __future__ import annotations

from typing import Any

#: what each compared card key is called in messages
KEY_NAMES = {"problem": "problem", "params": "parameters", "resolution": "resolution", "task": "training task",
             "target_time": "target time", "dt_frame": "frame interval", "history": "history"}


def scored_keys(task: str | None) -> tuple[str, ...]:
    """The card keys a model trained on ``task`` must share with the data it is scored on.

    Parameters
    ----------
    task : str or None
        The training task of the card scored against (``"initial_to_final"``, ``"next_step"``,
        ``"bundles"``, ``"pairs"``, ``"all2all"``...).

    Returns
    -------
    tuple of str
        Problem, parameters, resolution and task; with the target time for ``initial_to_final`` (one
        step to the final time), the frame interval and history for ``next_step`` and ``bundles``
        (rollouts).
    """
    keys = ("problem", "params", "resolution", "task")
    if task == "initial_to_final":
        return (*keys, "target_time")
    if task in ("next_step", "bundles"):
        return (*keys, "dt_frame", "history")
    return keys


def _normal(key: str, value: Any) -> Any:
    """``value`` of card ``key`` in a comparable form (lists, times rounded to 1e-9)."""
    if key == "resolution":
        return list(value or [])
    if key == "params":
        return None if value is None else dict(value)
    if key in ("target_time", "dt_frame"):
        return None if value is None else round(float(value), 9)
    return value


def check_data_card(trained: dict[str, Any] | None, wanted: dict[str, Any], subject: str) -> None:
    """Raise ``ValueError`` naming the first difference between a checkpoint's card and ``wanted``.

    Parameters
    ----------
    trained : dict or None
        The checkpoint's data card (``checkpoint["pdebench"]["data"]``).
    wanted : dict
        The card of the data to score on (its ``task`` chooses the keys: :func:`scored_keys`).
    subject : str
        What needs ``wanted``, for the message (e.g. ``"task 'burgers1d_nu0.1'"``).

    Raises
    ------
    ValueError
        ``"trained on <what> <trained value>, but <subject> needs <wanted value>"``, or that the
        checkpoint has no card.
    """
    if not trained:
        raise ValueError("the checkpoint has no data card (trained before cards were recorded): cannot tell what it was trained on")
    for key in scored_keys(wanted.get("task")):
        have, need = _normal(key, trained.get(key)), _normal(key, wanted.get(key))
        if have != need:
            raise ValueError(f"trained on {KEY_NAMES[key]} {have!r}, but {subject} needs {need!r}")


def single_dataset_card(card: dict[str, Any]) -> dict[str, Any]:
    """The card to check: the card itself, or for a model trained (fine-tuned) on a one-file mixture
    (:class:`~pdebench.data.mixture.MixtureDataModule`) that file's card with the mixture's task and history."""
    if card.get("source") != "mixture":
        return card
    datasets = card.get("datasets") or []
    if len(datasets) != 1:
        names = card.get("names") or [d.get("problem") for d in datasets]
        raise ValueError(f"trained on a mixture of {len(datasets)} datasets ({', '.join(map(str, names))}); "
                         "score a model fine-tuned on the task's problem")
    return {**datasets[0], "task": card.get("task"), "history": card.get("history")}
