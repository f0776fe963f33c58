import numpy as np
import pytest
import torch

from pipeline.metrics import accuracy, avg_gap, evaluate, mia_efficacy, true_class_confidence


def test_accuracy_and_ua_on_hand_made_logits():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 1])
    assert accuracy(logits, labels) == pytest.approx(75.0)
    assert 100 - accuracy(logits, labels) == pytest.approx(25.0)


def test_accuracy_of_empty_set_is_an_error():
    with pytest.raises(ValueError):
        accuracy(torch.empty(0, 2), torch.empty(0, dtype=torch.long))


def test_true_class_confidence():
    logits = torch.log(torch.tensor([[0.7, 0.3], [0.2, 0.8]]))
    np.testing.assert_allclose(true_class_confidence(logits, torch.tensor([0, 0])), [0.7, 0.2], rtol=1e-6)


def test_mia_efficacy_known_answer():
    # Members are near-certain (0.95..1.0), non-members unsure (0.2..0.5): the SVC's
    # boundary lies between. Of 4 forget samples, 3 look like non-members -> 75.
    rng = np.random.default_rng(0)
    members = rng.uniform(0.95, 1.0, 400)
    nonmembers = rng.uniform(0.2, 0.5, 400)
    forget = np.array([0.99, 0.3, 0.25, 0.4])
    assert mia_efficacy(members, nonmembers, forget) == pytest.approx(75.0)
    # A forgotten set that looks like members scores 0; like test data, 100.
    assert mia_efficacy(members, nonmembers, np.full(10, 0.98)) == 0.0
    assert mia_efficacy(members, nonmembers, np.full(10, 0.3)) == 100.0


def test_avg_gap_arithmetic():
    m = {"UA": 10.0, "RA": 98.0, "TA": 90.0, "MIA": 20.0}
    r = {"UA": 8.0, "RA": 99.0, "TA": 91.0, "MIA": 24.0}
    assert avg_gap(m, r) == pytest.approx((2 + 1 + 1 + 4) / 4)
    assert avg_gap(r, r) == 0.0


def test_evaluate_on_a_perfect_model_of_the_retain_set():
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[10.0, 0.0], [0.0, 10.0]]))
        model.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 20)
    y = torch.tensor([0, 1] * 20)
    res = evaluate(model, (x, y), (x, y), (x, 1 - y))
    assert res["UA"] == 0.0 and res["RA"] == 100.0 and res["TA"] == 0.0
    assert 0.0 <= res["MIA"] <= 100.0
