"""Lightning CLI of pdebench: ``python train.py fit --config configs/<problem>/<model>.yaml`` (or
``python -m pdebench.training.cli ...``, which needs no checkout of the repository).

LightningCLI over a training module (``model.class_path``: any :class:`~pdebench.training.base.TrainingBase`,
e.g. :class:`~pdebench.training.module.OperatorModule`) and a data module (``data.class_path``).
The data decide the model's channels, spatial dimensions and history (argument links), so the two can
never disagree. Subcommands: ``fit``, ``validate``, ``test`` (prints the metric table), ``predict``.

``model:`` is ``class_path`` + ``init_args``: ``pdebench.training.module.OperatorModule`` for grid
operators (``configs/burgers1d/fno.yaml``), the graph, bundle, mixture and fine-tuning modules
likewise (``configs/darcy2d/mppde_mesh.yaml``, ``configs/pretrain/dpot_finetune.yaml``); the optimiser
is ``init_args.optim`` (:class:`~pdebench.training.base.OptimConfig`).
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from pdebench.training.module_classes import read_checkpoint_card
from pdebench.signals import EXIT_USAGE, exit_status
from pdebench.training.checkpoint_io import AtomicCheckpointIO
from pdebench.training.data_card import check_data_card
from pdebench.training.interrupt import InterruptCheckpoint
from pdebench.training.base import TrainingBase
from pdebench.training.resume import MidEpochResumeCheck


#: Lightning's advertisements, logged at INFO level on every ``fit`` (the start of each message, exact).
LIGHTNING_TIPS = ("💡 Tip: For seamless cloud logging and experiment tracking",
                  "💡 Tip: For seamless cloud uploads and versioning")


class _NoLightningTips(logging.Filter):
    """Drops the records of :data:`LIGHTNING_TIPS`; every other record of the logger passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LIGHTNING_TIPS)


_NO_TIPS = _NoLightningTips()


def silence_lightning_noise() -> None:
    """Silence what Lightning prints on every run that says nothing about the run, each by its exact
    message at the place that emits it (idempotent):

    * the litlogger / litmodels tips (:data:`LIGHTNING_TIPS`), logged by
      ``lightning.pytorch.utilities.rank_zero``'s logger;
    * torch's ``FutureWarning`` "`isinstance(treespec, LeafSpec)` is deprecated", which Lightning's
      own ``utilities/_pytree.py`` triggers by building a ``LeafSpec`` (its code, not ours).
    """
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _NO_TIPS not in tips.filters:
        tips.addFilter(_NO_TIPS)
    warnings.filterwarnings("ignore", message=re.escape("`isinstance(treespec, LeafSpec)` is deprecated"),
                            category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree")


class StaleCheckpointError(ValueError):
    """``--ckpt_path`` of ``validate``, ``test`` or ``predict`` names a checkpoint trained on other data."""


class PDEBenchCLI(LightningCLI):
    """LightningCLI with the data → model links; ``validate``, ``test`` and ``predict`` refuse a
    checkpoint trained on other data than the data module's (:meth:`check_checkpoint_card`)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.in_channels", "model.init_args.in_channels", apply_on="instantiate")
        parser.link_arguments("data.out_channels", "model.init_args.out_channels", apply_on="instantiate")
        parser.link_arguments("data.spatial_dims", "model.init_args.spatial_dims", apply_on="instantiate")
        parser.link_arguments("data.history", "model.init_args.history", apply_on="instantiate")

    def check_checkpoint_card(self) -> None:
        """Compare the data card of ``--ckpt_path`` with the data module's, as the leaderboard compares it
        with a task's (:func:`~pdebench.training.data_card.check_data_card`).

        Nothing is checked without a checkpoint file (``ckpt_path`` unset, or one of Lightning's
        ``"last"``/``"best"``) or a data module without ``data_card``.

        Raises
        ------
        StaleCheckpointError
            One line: the checkpoint, what it was trained on and what the data module needs; or that
            the file is not a pdebench checkpoint (:func:`~pdebench.training.module_classes.read_checkpoint_card`).
        """
        path = self.config_init[self.subcommand].get("ckpt_path")
        card = getattr(self.datamodule, "data_card", None)
        if not path or not Path(path).is_file() or not callable(card):
            return
        try:
            wanted = card()
            subject = f"this run's data ({wanted.get('source', type(self.datamodule).__name__)})"
            check_data_card(read_checkpoint_card(path).get("data"), wanted, subject)
        except ValueError as exc:
            raise StaleCheckpointError(f"{path}: {exc}") from None

    def before_validate(self) -> None:
        self.check_checkpoint_card()

    def before_test(self) -> None:
        self.check_checkpoint_card()

    def before_predict(self) -> None:
        self.check_checkpoint_card()


def main(args: list[str] | None = None, run: bool = True) -> PDEBenchCLI:
    """Run the CLI (``args`` as on the command line; ``None`` reads ``sys.argv``; ``run=False``: build
    the trainer, model and data module from ``args`` without a subcommand and run nothing).

    Checkpoints are written by :class:`~pdebench.training.checkpoint_io.AtomicCheckpointIO`, given to
    the trainer as a ``class_path`` so that the saved ``config.yaml`` records it (and runs again);
    Lightning's noise is silenced first (:func:`silence_lightning_noise`).

    A ``fit`` stopped by SIGTERM, Ctrl-C or an error saves a resumable ``last.ckpt`` and its stream
    report (:class:`~pdebench.training.interrupt.InterruptCheckpoint`) and exits non-zero: 143 for
    SIGTERM, 130 for Ctrl-C (Lightning's own handling would exit 0 and 1), 1 with the traceback of an
    error. A ``fit`` resumed mid-epoch with a train loader that cannot restore its position warns
    (:class:`~pdebench.training.resume.MidEpochResumeCheck`). ``validate``, ``test`` and ``predict`` with
    a checkpoint trained on other data print one line and exit 2 (:class:`StaleCheckpointError`).
    """
    import lightning as L

    silence_lightning_noise()
    interrupt = InterruptCheckpoint()
    try:
        return PDEBenchCLI(
            TrainingBase,
            L.LightningDataModule,
            subclass_mode_model=True,  # the training module by class_path
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"plugins": [{"class_path": f"{AtomicCheckpointIO.__module__}.{AtomicCheckpointIO.__qualname__}"}], "callbacks": [interrupt, MidEpochResumeCheck()]},
            seed_everything_default=0,
            args=args,
            run=run,
        )
    except StaleCheckpointError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except SystemExit:  # Lightning ends SIGTERM (SIGTERMException) and Ctrl-C runs by SystemExit
        if interrupt.cause is None:
            raise
        raise SystemExit(exit_status(interrupt.cause)) from None


if __name__ == "__main__":
    main()
