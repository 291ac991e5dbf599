"""The ``scoring:`` section: parameters of the sigmoidal anomaly score (DESIGN §5)."""

from __future__ import annotations

from pydantic import Field, model_validator

from pvad.config.base import Section


class ScoringConfig(Section):
    """Sigmoidal anomaly score parameters (DESIGN.md §5)."""

    tau: float = Field(0.5, gt=0.0, lt=1.0, description="sensibility threshold")
    nu: float = Field(2.0, gt=0.0, description="reactivity")
    lb: float = Field(-7.0, description="accumulator lower bound (also x_0)")
    ub: float = Field(7.0, description="accumulator upper bound")

    @model_validator(mode="after")
    def _bounds(self) -> "ScoringConfig":
        if not self.lb < self.ub:
            raise ValueError("lb must be below ub")
        return self
