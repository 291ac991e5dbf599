"""SAS properties (DESIGN.md §5)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis_server.scoring import SigmoidalAnomalyScore, delta_down, delta_up
from pvad.config import ScoringConfig

sigmas = st.floats(0.0, 1.0, allow_nan=False)


def test_starts_at_lower_bound():
    sas = SigmoidalAnomalyScore(ScoringConfig())
    assert sas.x == -7.0
    assert sas.score == pytest.approx(1 / (1 + math.exp(7)))
    assert not sas.alarm


def test_clamp_after_add_never_overshoots_upper_bound():
    cfg = ScoringConfig(nu=5.0)
    sas = SigmoidalAnomalyScore(cfg)
    xs = [sas.update(1.0).accumulator for _ in range(10)]
    # -7 + 5 = -2, +5 = 3, +5 = 8 -> clamped to 7 (a clamp *before* adding would give 12)
    assert xs[:3] == [-2.0, 3.0, 7.0]
    assert max(xs) == 7.0


@given(st.lists(sigmas, max_size=200), st.floats(0.05, 0.95), st.floats(0.1, 10.0))
@settings(max_examples=200, deadline=None)
def test_accumulator_stays_in_bounds(seq, tau, nu):
    cfg = ScoringConfig(tau=tau, nu=nu)
    sas = SigmoidalAnomalyScore(cfg)
    for s in seq:
        u = sas.update(s)
        assert cfg.lb <= u.accumulator <= cfg.ub


@given(sigmas, st.floats(0.01, 0.99))
def test_deltas_in_unit_interval_for_any_tau(sigma, tau):
    if sigma >= tau:
        assert 0.0 <= delta_up(sigma, tau) <= 1.0 + 1e-12
    else:
        assert 0.0 <= delta_down(sigma, tau) <= 1.0 + 1e-12


def test_below_threshold_never_raises_score_for_high_tau():
    # The papers' Δ⁻ = (1-σ-τ)/(1-τ) is negative for σ=0.75, τ=0.8 and would *raise* the score.
    sas = SigmoidalAnomalyScore(ScoringConfig(tau=0.8))
    sas.x = 0.0
    before = sas.score
    sas.update(0.75)
    assert sas.score < before


def test_papers_delta_down_equals_ours_at_half():
    for sigma in (0.0, 0.1, 0.3, 0.49):
        assert delta_down(sigma, 0.5) == pytest.approx((1 - sigma - 0.5) / (1 - 0.5))


def test_alarm_raised_and_cleared_at_half():
    sas = SigmoidalAnomalyScore(ScoringConfig(nu=2.0))
    ups = [sas.update(1.0) for _ in range(4)]  # x: -5, -3, -1, 1
    assert [u.alarm for u in ups] == [False, False, False, True]
    assert [u.raised for u in ups] == [False, False, False, True]
    assert ups[-1].score >= 0.5
    down = sas.update(0.0)  # x: 1 - 2 = -1 -> s < 0.5
    assert down.cleared and not down.alarm and down.score < 0.5
    assert not sas.update(0.0).cleared  # cleared once only


def test_cameras_are_independent():
    a, b = SigmoidalAnomalyScore(ScoringConfig()), SigmoidalAnomalyScore(ScoringConfig())
    for _ in range(5):
        a.update(1.0)
    assert a.alarm and not b.alarm and b.x == -7.0


def test_rejects_confidence_outside_unit_interval():
    sas = SigmoidalAnomalyScore(ScoringConfig())
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError):
            sas.update(bad)
