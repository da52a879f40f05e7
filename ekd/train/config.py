"""Training options (one pydantic model; unknown keys are errors)."""

from __future__ import annotations

from typing import ClassVar, Literal

import pydantic

__all__ = ["TrainConfig"]


class TrainConfig(pydantic.BaseModel):
    """How one model is trained. Loss = w_E·mean((ΔE/n_atoms)²) + w_F·mean(w_atom·|ΔF|²/3)
    + w_S·mean(Δσ²) over periodic conformations and Voigt components.

    Energies in eV, forces in eV/Å, stresses in eV/Å³ (1 GPa = 0.00624 eV/Å³); ``force_weight``
    0 trains on energies only and then no force is ever computed during training; ``stress_weight``
    0 (the default) computes no stress.
    """

    model_config = pydantic.ConfigDict(extra="forbid")
    #: settings that change how fast a training runs, not what it computes: never hashed
    NOT_HASHED: ClassVar[frozenset[str]] = frozenset({"batch_cache_mb"})
    #: settings added after runs were made, left out of the hash at these defaults (those runs resume)
    ADDED: ClassVar[dict] = {"freeze": []}

    epochs: int = pydantic.Field(400, ge=1, description="upper bound; early stopping usually ends sooner")
    batch_size: int = pydantic.Field(32, ge=1)
    lr: float = pydantic.Field(3e-3, gt=0)
    weight_decay: float = pydantic.Field(1e-6, ge=0)
    energy_weight: float = pydantic.Field(1.0, ge=0)
    force_weight: float = pydantic.Field(0.0, ge=0)
    stress_weight: float = pydantic.Field(0.0, ge=0, description="needs stress labels on the periodic conformations")
    lr_factor: float = pydantic.Field(0.5, gt=0, lt=1, description="plateau schedule: LR multiplier")
    lr_patience: int = pydantic.Field(10, ge=0, description="plateau schedule: epochs without improvement")
    min_lr: float = pydantic.Field(1e-5, ge=0)
    early_stopping: int = pydantic.Field(30, ge=1, description="stop after this many epochs without improvement")
    clip_grad: float = pydantic.Field(10.0, gt=0, description="max gradient norm")
    ema_decay: float = pydantic.Field(0.99, ge=0, lt=1, description="0 disables the EMA of weights")
    val_fraction: float = pydantic.Field(0.1, gt=0, lt=1)
    test_fraction: float = pydantic.Field(0.1, ge=0, lt=1)
    batch_cache_mb: float = pydantic.Field(
        2048, ge=0, description="converted batches kept in memory per rank; the rest are converted again when used (same training, slower)")
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "auto"
    # fine-tuning: an ekd model.pt whose architecture and weights start the training, its
    # reference energies refit to the training data first (ekd.train.start); its file's hash is
    # part of what a checkpoint must match to be resumed
    init_from: str | None = None
    freeze: list[str] = pydantic.Field([], description="fnmatch patterns of parameter names kept as they start (e.g. '*.layers.0.*')")

    def hashed(self, *exclude: str) -> dict:
        """The settings that decide what a training computes (a stage's or checkpoint's hash),
        less ``exclude``."""
        values = self.model_dump(exclude=set(self.NOT_HASHED) | set(exclude))
        return {k: v for k, v in values.items() if not (k in self.ADDED and v == self.ADDED[k])}
