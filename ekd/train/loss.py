"""The EKD loss: energy per atom plus (optionally weighted) force and stress components."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ekd.backend import Batch, loss_weights

__all__ = ["LossTotals", "ekd_loss", "inverse_spread_weights"]


@dataclasses.dataclass(frozen=True)
class LossTotals:
    """The denominators of the loss's means over a whole batch: conformations, the sum of the
    per-atom force weights, and the conformations with stress labels. When a batch is shared
    among ranks, each rank's part uses the whole batch's totals, so that the ranks' losses (and
    gradients) add up to the loss of the whole batch."""

    conformations: float
    force_weight: float
    stress_rows: int

    @classmethod
    def of(cls, frames) -> "LossTotals":
        """Totals of a :class:`ekd.data.Dataset`, its loss weights (:func:`ekd.backend.loss_weights`)
        included: the conformations count by their energy weights."""
        energy_weight, force_weight = loss_weights(frames)
        conformations = float(energy_weight.sum()) if energy_weight is not None else len(frames)
        weights = float(force_weight.sum()) if force_weight is not None else float(frames.n_atoms)
        stress_rows = int(np.isfinite(frames.stress).all(axis=1).sum()) if frames.stress is not None else 0
        return cls(conformations, weights, stress_rows)


def ekd_loss(
    energy: torch.Tensor,
    forces: torch.Tensor | None,
    batch: Batch,
    energy_weight: float,
    force_weight: float,
    stress: torch.Tensor | None = None,
    stress_weight: float = 0.0,
    totals: LossTotals | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss = w_E·Σ_conf w_c(ΔE/n_atoms)² / Σ_conf w_c + w_F·Σ_atoms w_a|ΔF_a|² / (3 Σ_atoms w_a)
    + w_S·mean_{periodic conf, Voigt component}(Δσ²).

    Energies in eV, forces in eV/Å, stresses (N, 6) in eV/Å³ (Voigt); the force labels are
    ``batch.forces`` (reference forces or the teachers' mean) and ``batch.force_weight`` the
    optional per-atom weights (e.g. inverse teacher spread), ``batch.energy_weight`` the optional
    per-conformation ones (w_c, default 1); the stress labels ``batch.stress``
    (rows with NaN, molecules, do not count). ``totals``: the means' denominators when ``batch``
    is one rank's part of a larger batch (default: the batch's own). Returns the loss and its
    parts as floats (``energy``, ``forces``, ``stress``).
    """
    squared_energy = ((energy - batch.energy) / batch.sizes) ** 2
    if batch.energy_weight is None:
        energy_term = squared_energy.sum() / (totals.conformations if totals else batch.n_conformations)
    else:
        energy_term = (batch.energy_weight * squared_energy).sum() / (totals.conformations if totals else batch.energy_weight.sum())
    loss = energy_weight * energy_term
    parts = {"energy": float(energy_term.detach())}
    if force_weight > 0:
        if forces is None or batch.forces is None:
            raise ValueError("a force weight was set but the batch has no force labels")
        squared = ((forces - batch.forces) ** 2).sum(dim=-1)
        weight = batch.force_weight if batch.force_weight is not None else torch.ones_like(squared)
        force_term = (weight * squared).sum() / (3 * (totals.force_weight if totals else weight.sum()))
        loss = loss + force_weight * force_term
        parts["forces"] = float(force_term.detach())
    if stress_weight > 0:
        if stress is None or batch.stress is None:
            raise ValueError("a stress weight was set but the batch has no stress labels")
        known = torch.isfinite(batch.stress).all(dim=1)
        stress_term = ((stress[known] - batch.stress[known]) ** 2).sum() / (6 * (max(totals.stress_rows, 1) if totals else known.sum().clamp(min=1)))
        loss = loss + stress_weight * stress_term
        parts["stress"] = float(stress_term.detach())
    return loss, parts


def inverse_spread_weights(spread: np.ndarray) -> np.ndarray:
    """Per-atom force weights ∝ 1/(teacher spread + median spread), normalised to mean 1.

    Atoms where the teachers agree count more; the median keeps one near-zero spread from
    dominating.
    """
    weight = 1.0 / (spread + np.median(spread))
    return weight / weight.mean()
