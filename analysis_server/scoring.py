"""Sigmoidal anomaly score (SAS), DESIGN.md §5, from G §3.4.5 / P §3.5.

    s_t = 1 / (1 + exp(-x_t))
    x_t = clamp(x_{t-1} + Δ⁺ ν)  if σ_t ≥ τ,  Δ⁺ = (σ_t − τ) / (1 − τ)
    x_t = clamp(x_{t-1} − Δ⁻ ν)  if σ_t < τ,  Δ⁻ = (τ − σ_t) / τ
    clamp to [LB, UB], x_0 = LB

Δ⁻ departs from the papers' (1 − σ − τ)/(1 − τ), which is negative for some σ < τ when τ > 0.5
(the score would rise below threshold); both forms agree at τ = 0.5 and ours stays in [0, 1].
The clamp is applied after the step, so x never leaves [LB, UB].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pvad.config import ScoringConfig


def delta_up(sigma: float, tau: float) -> float:
    return (sigma - tau) / (1.0 - tau)


def delta_down(sigma: float, tau: float) -> float:
    return (tau - sigma) / tau


@dataclass(frozen=True)
class ScoreUpdate:
    confidence: float  # σ_t
    accumulator: float  # x_t
    score: float  # s_t
    alarm: bool  # alarm state after this frame
    raised: bool  # this frame raised the alarm
    cleared: bool  # this frame cleared the alarm


class SigmoidalAnomalyScore:
    """Per-camera accumulator and alarm state machine (alarm on while s_t ≥ 0.5)."""

    ALARM_LEVEL = 0.5

    def __init__(self, cfg: ScoringConfig) -> None:
        self.cfg = cfg
        self.x = cfg.lb
        self.alarm = False

    @property
    def score(self) -> float:
        return 1.0 / (1.0 + math.exp(-self.x))

    def hold(self) -> ScoreUpdate:
        """No decision for this frame (the camera is still learning its normal): the state stands still."""
        return ScoreUpdate(0.0, self.x, self.score, self.alarm, False, False)

    def update(self, sigma: float) -> ScoreUpdate:
        if not 0.0 <= sigma <= 1.0 or math.isnan(sigma):
            raise ValueError(f"confidence must be in [0, 1], got {sigma}")
        c = self.cfg
        if sigma >= c.tau:
            x = self.x + delta_up(sigma, c.tau) * c.nu
        else:
            x = self.x - delta_down(sigma, c.tau) * c.nu
        self.x = min(max(x, c.lb), c.ub)
        s = self.score
        was = self.alarm
        self.alarm = s >= self.ALARM_LEVEL
        return ScoreUpdate(sigma, self.x, s, self.alarm, self.alarm and not was, was and not self.alarm)
