"""Gates: known answers."""

import math

from pipeline.ops.gates import GateConfig, check, failures, forget_allowance

PARENT = {"UA": 0.0, "RA": 99.5, "TA": 92.0, "MIA": 1.0}


def passed(gates):
    return {g["gate"]: g["passed"] for g in gates}


def test_a_model_like_retrain_passes():
    new = {"UA": 8.0, "RA": 98.9, "TA": 91.6, "MIA": 12.0}
    gates = check(new, PARENT, 6000, GateConfig())
    assert all(passed(gates).values()), failures(gates)


def test_each_gate_fails_on_its_own():
    cfg = GateConfig()
    assert not passed(check({**PARENT, "UA": 8.0, "TA": 90.9}, PARENT, 6000, cfg))["ta_drop"]
    assert not passed(check({**PARENT, "UA": 8.0, "RA": 97.4}, PARENT, 6000, cfg))["ra_drop"]
    # memorised forget set (100 % accuracy on 6000 samples) vs TA 92: not forgotten
    g = check({**PARENT, "UA": 0.0}, PARENT, 6000, cfg)
    assert not passed(g)["forget_accuracy"] and "forget_accuracy" in failures(g)
    assert not passed(check({**PARENT, "UA": 8.0}, PARENT, 6000, cfg, weights_finite=False))["weights_finite"]
    assert not passed(check({**PARENT, "UA": 8.0, "TA": math.nan}, PARENT, 6000, cfg))["ta_drop"]
    assert not passed(check({**PARENT, "UA": 8.0}, PARENT, 6000, GateConfig(min_mia=50)))["mia"]


def test_small_forget_sets_get_a_binomial_allowance():
    cfg = GateConfig()
    # 3 samples at TA 92: two standard errors are ~31 points, so 100 % cannot be told from chance
    assert forget_allowance(92.0, 3, cfg) > 100
    assert passed(check({**PARENT, "UA": 0.0}, PARENT, 3, cfg))["forget_accuracy"]
    # 10 000 samples: the allowance shrinks to ~0.5 points above TA + margin
    assert abs(forget_allowance(92.0, 10_000, cfg) - (92.0 + 5.0 + 2 * 100 * math.sqrt(0.92 * 0.08 / 10_000))) < 1e-9
    assert forget_allowance(92.0, 10_000, GateConfig(binomial_z=0, forget_margin=0)) == 92.0


def test_no_forget_set_gates_quality_only():
    """A retrain that forgets purged requests again has no forget set: UA and MIA are None
    and only the quality gates apply (a TA drop still fails)."""
    new = {"UA": None, "RA": 99.0, "TA": 91.5, "MIA": None}
    assert passed(check(new, PARENT, 0, GateConfig())) == {"weights_finite": True, "ta_drop": True, "ra_drop": True}
    assert not all(passed(check({**new, "TA": 80.0}, PARENT, 0, GateConfig())).values())
