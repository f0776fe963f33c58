"""The plain predict class behind Ray Serve: parse, predict, validated swap."""

import math

import pytest
import torch

from pipeline.models import build_model
from serving.predictor import BadInstances, Predictor, RejectedModel

CARD = {"arch": "mlp", "model_kwargs": {"hidden": 8}, "input_shape": [1, 2, 3], "num_classes": 4}


def model(seed=0):
    torch.manual_seed(seed)
    return build_model("mlp", (1, 2, 3), 4, hidden=8)


@pytest.fixture
def predictor():
    p = Predictor(max_instances=8)
    p.swap(model(), CARD, "1")
    return p


def test_predict_names_the_version_and_batches_split_back(predictor):
    preds, version = predictor.predict([[0.1] * 6, [0.5] * 6])
    assert version == "1" and len(preds) == 2 and all(0 <= p < 4 for p in preds)
    out = predictor.predict_batch([predictor.parse([[0.1] * 6]), predictor.parse([[0.5] * 6, [0.1] * 6])])
    assert [len(p) for p, _ in out] == [1, 2] and out[1][0][1] == preds[0]


@pytest.mark.parametrize("bad, message", [
    ([], "between 1 and 8"),
    ([[0.0] * 6] * 9, "between 1 and 8"),
    ([[0.0] * 5], "needs 6 floats"),
    ([[0.0] * 6, [0.0] * 5], "same length"),
    ([[math.nan] * 6], "NaN or inf"),
    ([[1e39] * 6], "too large"),
    ("abc", "must be a list"),
    ([1.0, 2.0], "must be a list"),
    ([["a"] * 6], "numbers only"),
    ([["0.5"] * 6], "numbers only"),  # numpy would read these as 0.5 without a word
    ([[0.5] * 5 + ["1"]], "numbers only"),
    ([[True] * 6], "numbers only"),
    ([[10 ** 400] + [0.0] * 5], "numbers only"),  # past any float: OverflowError, not a 500
    ([[2 ** 70] * 6], "numbers only"),
    ({"x": 1}, "must be a list"),
])
def test_bad_instances_say_what_was_wrong(predictor, bad, message):
    with pytest.raises(BadInstances, match=message):
        predictor.predict(bad)


def test_json_nested_past_the_recursion_limit_is_a_bad_body():
    from serving.predictor import read_json

    with pytest.raises(ValueError, match="nested too deeply"):
        read_json(b"[" * 100_000 + b"]" * 100_000, 10**6)


def test_a_bad_candidate_is_never_served(predictor):
    nan = model(1)
    with torch.no_grad():
        next(nan.parameters())[0, 0] = math.nan
    with pytest.raises(RejectedModel, match="NaN"):
        predictor.swap(nan, CARD, "2")
    with pytest.raises(RejectedModel, match="input shape"):
        predictor.swap(build_model("mlp", (7,), 4, hidden=8), {**CARD, "input_shape": [7]}, "3")
    with pytest.raises(RejectedModel, match="classes"):
        predictor.swap(build_model("mlp", (1, 2, 3), 5, hidden=8), {**CARD, "num_classes": 5}, "4")
    assert predictor.version == "1" and "rejected" in predictor.last_error
    predictor.swap(model(2), CARD, "5")
    assert predictor.predict([[0.0] * 6])[1] == "5" and predictor.last_error is None
