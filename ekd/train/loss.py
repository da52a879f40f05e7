"""The EKD loss: energy per atom plus (optionally weighted) force and stress components."""

from __future__ import annotations

import numpy as np
import torch

from ekd.backend import Batch

__all__ = ["ekd_loss", "inverse_spread_weights"]


def ekd_loss(
    energy: torch.Tensor,
    forces: torch.Tensor | None,
    batch: Batch,
    energy_weight: float,
    force_weight: float,
    stress: torch.Tensor | None = None,
    stress_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss = w_E·mean_conf((ΔE/n_atoms)²) + w_F·Σ_atoms w_a|ΔF_a|² / (3 Σ_atoms w_a)
    + w_S·mean_{periodic conf, Voigt component}(Δσ²).

    Energies in eV, forces in eV/Å, stresses (N, 6) in eV/Å³ (Voigt); the force labels are
    ``batch.forces`` (reference forces or the teachers' mean) and ``batch.force_weight`` the
    optional per-atom weights (e.g. inverse teacher spread); the stress labels ``batch.stress``
    (rows with NaN, molecules, do not count). Returns the loss and its parts as floats
    (``energy``, ``forces``, ``stress``).
    """
    energy_term = (((energy - batch.energy) / batch.sizes) ** 2).mean()
    loss = energy_weight * energy_term
    parts = {"energy": float(energy_term.detach())}
    if force_weight > 0:
        if forces is None or batch.forces is None:
            raise ValueError("a force weight was set but the batch has no force labels")
        squared = ((forces - batch.forces) ** 2).sum(dim=-1)
        weight = batch.force_weight if batch.force_weight is not None else torch.ones_like(squared)
        force_term = (weight * squared).sum() / (3 * weight.sum())
        loss = loss + force_weight * force_term
        parts["forces"] = float(force_term.detach())
    if stress_weight > 0:
        if stress is None or batch.stress is None:
            raise ValueError("a stress weight was set but the batch has no stress labels")
        known = torch.isfinite(batch.stress).all(dim=1)
        stress_term = ((stress[known] - batch.stress[known]) ** 2).sum() / (6 * known.sum().clamp(min=1))
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
