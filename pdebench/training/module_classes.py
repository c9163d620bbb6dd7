"""The training modules a checkpoint may name: an allow-list, never an import path from a file.

A checkpoint records the class that trained it (``pdebench.module_class``, e.g.
``"pdebench.training.graph_module.GraphOperatorModule"``) so that evaluation rebuilds the same
module. That string comes from a file, which anyone can write: it is looked up here by name, and
nothing it names is ever imported.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from pdebench.training.base import TrainingBase
from pdebench.training.bundled import BundledOperatorModule
from pdebench.training.finetune import FineTuneModule, MaskedOperatorModule
from pdebench.training.graph_module import GraphOperatorModule
from pdebench.training.module import OperatorModule

#: Qualified name -> class, for every training module of the package.
TRAINING_MODULES: dict[str, type[TrainingBase]] = {
    f"{cls.__module__}.{cls.__qualname__}": cls
    for cls in (OperatorModule, GraphOperatorModule, BundledOperatorModule, MaskedOperatorModule, FineTuneModule)
}


def training_module_class(name: str | None) -> type[TrainingBase]:
    """The class of :data:`TRAINING_MODULES` called ``name`` (:class:`OperatorModule` for ``None``
    or ``""``: checkpoints written before the name was recorded).

    Raises
    ------
    ValueError
        ``name`` is not one of the package's training modules (nothing is imported).
    """
    if not name:
        return OperatorModule
    if not isinstance(name, str) or name not in TRAINING_MODULES:
        raise ValueError(f"checkpoint names module class {name!r}, which is not one of pdebench's training modules "
                         f"({', '.join(sorted(TRAINING_MODULES))})")
    return TRAINING_MODULES[name]


def read_checkpoint_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``pdebench`` card of the Lightning checkpoint ``path`` (its data card, module class, budget),
    read with ``weights_only=True`` (no code from the file runs) and checked to name one of the
    package's training modules (:func:`training_module_class`).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        One line naming the file: not a PyTorch checkpoint, one holding objects other than tensors
        and plain values, one that is not a mapping, or one naming a foreign module class.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols on stderr
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds (UnpicklingError, RuntimeError, EOFError...)
        raise ValueError(f"{path} is not a tensor-only PyTorch checkpoint ({type(exc).__name__}); "
                         "pdebench loads checkpoints without running code from them") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("state_dict"), dict):
        raise ValueError(f"{path} is not a Lightning checkpoint (no state_dict)")
    extras = saved.get("pdebench", {})
    if not isinstance(extras, dict):
        raise ValueError(f"{path}: its pdebench card is a {type(extras).__name__}, expected a mapping")
    try:
        training_module_class(extras.get("module_class"))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return extras


def load_predictor(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> tuple[TrainingBase, dict[str, Any]]:
    """``(module, checkpoint_extras)`` of the Lightning checkpoint ``path``: the training module that
    wrote it (:func:`read_checkpoint_card`: an allow-listed class, tensors only), rebuilt on ``device`` in
    eval mode, a :class:`~pdebench.training.predictor.Predictor`."""
    path = Path(path)
    extras = read_checkpoint_card(path)
    cls = training_module_class(extras.get("module_class"))
    # a fine-tuned module's pre-training checkpoint is not needed to rebuild it (its weights are here)
    overrides = {"pretrained": None} if "pretrained" in inspect.signature(cls.__init__).parameters else {}
    module = cls.load_from_checkpoint(path, map_location=device, weights_only=True, **overrides)
    module.to(device).eval()
    return module, extras
