"""Helpers shared by the training tests (not a test module)."""

from __future__ import annotations

import pytorch_lightning as pl


class Interrupt(pl.Callback):
    """Raises at a given global step: a run killed mid-way, for the resume tests."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated interruption")
