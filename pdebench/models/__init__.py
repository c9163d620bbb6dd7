"""The model registry (:data:`MODELS`) and the operators it holds."""

from pdebench.models.registry import KINDS, MODELS, register_model

from pdebench.models import dpot, fno, lsm, mppde, nsm, scot, unet  # noqa: E402,F401  (register the models)
from pdebench.models import gp_kronecker  # noqa: E402,F401  (GP-HM, kind "instance")
from pdebench.models import dcdm  # noqa: E402,F401  (DCDM, kind "linear-solver")

__all__ = ["KINDS", "MODELS", "register_model"]
