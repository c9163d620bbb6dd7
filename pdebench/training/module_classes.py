"""The training modules a checkpoint may name: an allow-list, never an import path from a file.

A checkpoint records the class that trained it (``pdebench.module_class``, e.g.
``"pdebench.training.graph_module.GraphOperatorModule"``) so that evaluation rebuilds the same
module. That string comes from a file, which anyone can write: it is looked up here by name, and
nothing it names is ever imported.
"""

from __future__ import annotations

from pdebench.training.bundled import BundledOperatorModule
from pdebench.training.finetune import FineTuneModule, MaskedOperatorModule
from pdebench.training.graph_module import GraphOperatorModule
from pdebench.training.module import OperatorModule

#: Qualified name -> class, for every training module of the package.
TRAINING_MODULES: dict[str, type[OperatorModule]] = {
    f"{cls.__module__}.{cls.__qualname__}": cls
    for cls in (OperatorModule, GraphOperatorModule, BundledOperatorModule, MaskedOperatorModule, FineTuneModule)
}


def training_module_class(name: str | None) -> type[OperatorModule]:
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
