"""Checkpoints of the linear-solver networks (DCDM's, the learned incomplete Cholesky's).

A file holds tensors and plain values only, nothing that names code to import::

    {"format": "pdebench-dcdm" | "pdebench-learned-ic" | ..., "version": 1,
     "class": <a name on the format's allow-list>, "config": {<constructor arguments>},
     "state_dict": {<name>: tensor}, "training": {<the JSON-able training card>}}

:func:`load_network` reads it with ``torch.load(..., weights_only=True)`` (no unpickling of objects)
and builds the network from the format's allow-list ``{class name: class}``: a file can only choose
among the classes the caller passes. Files are written atomically (:func:`pdebench.atomic.atomic_write`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pdebench.atomic import atomic_write

CHECKPOINT_VERSION = 1


def save_network(path: str | Path, model: nn.Module, training: Mapping[str, Any] | None, *, fmt: str,
                 classes: Mapping[str, type[nn.Module]], what: str) -> Path:
    """Write ``model`` and its training card to ``path`` atomically.

    Parameters
    ----------
    path
        Destination ``.pt`` file; its folder is created.
    model
        A network of one of ``classes`` with a dataclass ``config`` whose fields rebuild it
        (``type(model)(**asdict(model.config))``).
    training
        The training card: JSON-able values only (grid, systems, steps, wall time, losses...).
    fmt
        The file's ``format`` tag.
    classes
        The allow-list of the format, ``{class name: class}``.
    what
        The network family in messages (``"DCDM"``, ``"learned IC"``).

    Raises
    ------
    ValueError
        ``model`` is not on the allow-list, or the card is not JSON-able.
    """
    name = type(model).__name__
    if classes.get(name) is not type(model):
        raise ValueError(f"cannot save a {name}; {what} checkpoints hold one of {sorted(classes)}")
    card = dict(training or {})
    try:
        json.dumps(card, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"the training card of a {what} checkpoint must be JSON-able: {error}") from None
    path = Path(path)
    payload = {"format": fmt, "version": CHECKPOINT_VERSION, "class": name, "config": asdict(model.config),
               "state_dict": model.state_dict(), "training": card}
    with atomic_write(path) as handle:
        torch.save(payload, handle)
    return path


def load_network(path: str | Path, formats: Mapping[str, Mapping[str, type[nn.Module]]], what: str,
                 hint: str = "") -> tuple[str, nn.Module, dict[str, Any]]:
    """``(format, network in eval mode, training card)`` from a :func:`save_network` file.

    Parameters
    ----------
    path
        The file.
    formats
        The formats accepted, each with its allow-list ``{class name: class}``.
    what
        The checkpoint family in messages (``"DCDM"``, ``"linear-solver"``).
    hint
        Appended to the "not a checkpoint" message (how to write one).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not one of ``formats``, or names a class outside its format's allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt not in formats:
        expected = " or ".join(repr(f) for f in formats)
        raise ValueError(f"{path} is not a {what} checkpoint (expected format {expected}{'; ' + hint if hint else ''})")
    classes = formats[fmt]
    if payload.get("class") not in classes:
        raise ValueError(f"{path} names network class {payload.get('class')!r}; expected one of {sorted(classes)}")
    model = classes[payload["class"]](**payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return fmt, model, dict(payload.get("training") or {})
