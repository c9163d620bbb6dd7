"""Train any registered operator: ``python train.py fit --config configs/<problem>/<model>.yaml``.

The CLI lives in :mod:`pdebench.training.cli` (``python -m pdebench.training.cli`` is the same).
"""

from pdebench.training.cli import PDEBenchCLI, main

__all__ = ["PDEBenchCLI", "main"]

if __name__ == "__main__":
    main()
