"""The common scorer of any model or ensemble: COMP6 metrics and parity plots."""

from ekd.evaluate.comp6 import comp6_errors, comp6_metrics, refit_offsets, relative_energy_sums
from ekd.evaluate.scorer import evaluate, evaluate_streamed

__all__ = ["comp6_errors", "comp6_metrics", "evaluate", "evaluate_streamed", "refit_offsets", "relative_energy_sums"]
