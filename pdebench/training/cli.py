"""Lightning CLI of pdebench: ``python train.py fit --config configs/<problem>/<model>.yaml`` (or
``python -m pdebench.training.cli ...``, which needs no checkout of the repository).

LightningCLI over :class:`pdebench.training.OperatorModule` and a data module (``data.class_path``).
The data decide the model's channels, spatial dimensions and history (argument links), so the two can
never disagree. Subcommands: ``fit``, ``validate``, ``test`` (prints the metric table), ``predict``.

``model:`` takes the module's arguments directly (an ``OperatorModule``), or ``class_path`` +
``init_args`` for a subclass, e.g. :class:`pdebench.training.finetune.FineTuneModule`
(``configs/pretrain/dpot_finetune.yaml``).
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from pdebench.signals import exit_status
from pdebench.training.checkpoint_io import AtomicCheckpointIO
from pdebench.training.interrupt import InterruptCheckpoint
from pdebench.training.module import OperatorModule


class PDEBenchCLI(LightningCLI):
    """LightningCLI with the data → model links."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.in_channels", "model.init_args.in_channels", apply_on="instantiate")
        parser.link_arguments("data.out_channels", "model.init_args.out_channels", apply_on="instantiate")
        parser.link_arguments("data.spatial_dims", "model.init_args.spatial_dims", apply_on="instantiate")
        parser.link_arguments("data.history", "model.init_args.history", apply_on="instantiate")


def main(args: list[str] | None = None) -> PDEBenchCLI:
    """Run the CLI (``args`` as on the command line; ``None`` reads ``sys.argv``).

    A ``fit`` stopped by SIGTERM, Ctrl-C or an error saves a resumable ``last.ckpt`` and its stream
    report (:class:`~pdebench.training.interrupt.InterruptCheckpoint`) and exits non-zero: 143 for
    SIGTERM, 130 for Ctrl-C (Lightning's own handling would exit 0 and 1), 1 with the traceback of an
    error.
    """
    import lightning as L

    interrupt = InterruptCheckpoint()
    try:
        return PDEBenchCLI(
            OperatorModule,
            L.LightningDataModule,
            subclass_mode_model=True,  # OperatorModule by default; subclasses by class_path
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"plugins": [AtomicCheckpointIO()], "callbacks": [interrupt]},
            seed_everything_default=0,
            args=args,
        )
    except SystemExit:  # Lightning ends SIGTERM (SIGTERMException) and Ctrl-C runs by SystemExit
        if interrupt.cause is None:
            raise
        raise SystemExit(exit_status(interrupt.cause)) from None


if __name__ == "__main__":
    main()
