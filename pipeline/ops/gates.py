"""Quality and privacy gates a nightly model must pass before it may become champion.

Pure functions over metrics: no I/O, unit-tested without Ray.

Defaults, and why:
- TA may drop at most 1 point vs the parent. Users notice a point of test accuracy;
  the exact oracle (retrain) on Fashion-MNIST costs about 0.1-0.5 TA per 10 % forgotten,
  so a larger drop means unlearning damaged the model, not that data left it.
- RA may drop at most 2 points vs the parent. The parent memorised the retain set
  (~99.4 % RA); unlearning relaxes that a little, as retraining would.
- Forget accuracy (100 - UA) at most TA + 5 points + two binomial standard errors of a
  TA-accurate model on that many samples. A model that never saw the samples scores
  about TA on them; a memorising one about 100. With 3 samples the statistical
  allowance is large (~20 points): a tiny request cannot be told apart from chance,
  which is the honest answer, and it is why MIA and per-request accuracy are recorded.
- Every weight finite; the metrics themselves finite.
- No forget set (a retrain that forgets purged requests again, whose samples are gone):
  the forget-accuracy and MIA gates do not apply; TA, RA and finite weights still do.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from pipeline.config import ConfigModel


class GateConfig(ConfigModel):
    """The gates' limits. A negative forget margin is allowed: a stricter gate."""

    max_ta_drop: float = Field(1.0, description="test-accuracy points the new version may lose vs its parent")
    max_ra_drop: float = Field(2.0, description="retain-accuracy points the new version may lose vs its parent")
    forget_margin: float = Field(5.0, description="forget accuracy may exceed TA by this much, plus binomial_z "
                                                  "standard errors (a small-sample allowance)")
    binomial_z: float = Field(2.0, ge=0, description="standard errors of slack for small forget sets (0 turns it off)")
    min_mia: float = Field(0.0, description="minimum MIA-Efficacy on the forget set (0: recorded, not gated)")


def forget_allowance(ta: float, n: int, cfg: GateConfig) -> float:
    """The highest forget accuracy (percent) the gate accepts for `n` forget samples."""
    p = min(max(ta / 100.0, 0.0), 1.0)
    return ta + cfg.forget_margin + cfg.binomial_z * 100.0 * math.sqrt(p * (1 - p) / max(n, 1))


def check(new: dict[str, float], parent: dict[str, float], n_forget: int, cfg: GateConfig,
          weights_finite: bool = True) -> list[dict[str, Any]]:
    """Each gate with its measured value, its limit and whether it passed."""
    gates = []

    def gate(name: str, value: float, limit: float, ok: bool, rule: str) -> None:
        gates.append({"gate": name, "value": round(value, 4), "limit": round(limit, 4),
                      "passed": bool(ok and math.isfinite(value)), "rule": rule})

    gate("weights_finite", float(weights_finite), 1.0, weights_finite, "every weight is finite")
    drop = parent["TA"] - new["TA"]
    gate("ta_drop", drop, cfg.max_ta_drop, drop <= cfg.max_ta_drop, "TA(parent) - TA(new) <= max_ta_drop")
    drop = parent["RA"] - new["RA"]
    gate("ra_drop", drop, cfg.max_ra_drop, drop <= cfg.max_ra_drop, "RA(parent) - RA(new) <= max_ra_drop")
    if n_forget == 0:  # a retrain forgetting only purged requests again: no forget set to gate on
        return gates
    fa, limit = 100.0 - new["UA"], forget_allowance(new["TA"], n_forget, cfg)
    gate("forget_accuracy", fa, limit, fa <= limit, "100 - UA <= TA + forget_margin + z * binomial s.e.")
    gate("mia", new["MIA"], cfg.min_mia, new["MIA"] >= cfg.min_mia, "MIA-Efficacy >= min_mia")
    return gates


def failures(gates: list[dict[str, Any]]) -> str:
    bad = [g for g in gates if not g["passed"]]
    return "; ".join(f"{g['gate']} {g['value']:.2f} vs limit {g['limit']:.2f}" for g in bad)
