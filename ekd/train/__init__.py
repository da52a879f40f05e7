"""Backend-agnostic training: config, EKD loss, reference-energy fit and the trainer."""

from ekd.train.config import TrainConfig
from ekd.train.loss import ekd_loss, inverse_spread_weights
from ekd.train.reference import fit_reference_energies
from ekd.train.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "ekd_loss", "inverse_spread_weights", "fit_reference_energies", "train"]
