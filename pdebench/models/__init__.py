"""The model registry (:data:`MODELS`, each model with its board) and the models it holds."""

from pdebench.registry import import_submodules
from pdebench.models.registry import MODEL_BOARDS, MODELS, register_model

import_submodules(__name__, __path__)  # registers every model: a new operator is one file in this folder

__all__ = ["MODEL_BOARDS", "MODELS", "register_model"]
