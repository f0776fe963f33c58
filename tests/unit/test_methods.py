"""Known-answer tests: a 2-layer MLP on separable blobs, forget one class.

Every method must drive forget accuracy down while retain accuracy holds, in seconds,
without Ray. The settings below are per method because the methods differ in how hard
they push; what is asserted is the same for all.
"""

import copy

import pytest
import torch

from pipeline.config import TrainConfig
from pipeline.errors import UserError
from pipeline.methods import METHODS, build_method
from pipeline.metrics import accuracy, predict_logits
from pipeline.models import MLP
from pipeline.train import fit
from pipeline.unlearn import RetainStream, UnlearnConfig, unlearn


def blobs(n_per_class=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 3.0 * torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    x = torch.cat([c + torch.randn(n_per_class, 2, generator=g) for c in centers])
    y = torch.arange(4).repeat_interleave(n_per_class)
    return x, y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x, y = blobs()
    model = MLP(2, 4, hidden=32)
    fit(model, x, y, TrainConfig(arch="mlp", model_kwargs={}, epochs=30, batch_size=32, lr=0.05))
    forget_mask = y == 0
    forget, retain = (x[forget_mask], y[forget_mask]), (x[~forget_mask], y[~forget_mask])
    assert accuracy(predict_logits(model, forget[0]), forget[1]) == 100.0
    return model, forget, retain


SETTINGS = {
    "lur": dict(epochs=8, lr=0.02, method_kwargs={"alpha": 0.05, "w_u": 0.3}),
    "finetune": dict(epochs=150, lr=0.2),
    "grad_ascent": dict(epochs=10, lr=0.005),
    "neggrad_plus": dict(epochs=8, lr=0.02, method_kwargs={"beta": 0.7}),
    "random_label": dict(epochs=20, lr=0.05),
    "salun": dict(epochs=20, lr=0.05, method_kwargs={"sparsity": 0.5}),
    "scrub": dict(epochs=3, lr=0.02, method_kwargs={"max_fraction": 0.8}),
    "l1_sparse": dict(epochs=60, lr=0.2, method_kwargs={"gamma": 0.001}),
    "retrain": dict(method_kwargs={"arch": "mlp", "model_kwargs": {}, "epochs": 30, "batch_size": 32, "lr": 0.05}),
}


def test_every_registered_method_has_a_known_answer_case():
    assert set(SETTINGS) == set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_forgets_and_retains(trained, name):
    model, forget, retain = trained
    model = copy.deepcopy(model)
    cfg = UnlearnConfig(method=name, forget_batch=16, retain_batch=32, conflict_every=2, **SETTINGS[name])
    result = unlearn(model, forget, retain, cfg)
    fa = accuracy(predict_logits(model, forget[0]), forget[1])
    ra = accuracy(predict_logits(model, retain[0]), retain[1])
    assert fa <= 20.0, f"{name} left forget accuracy at {fa}"
    assert ra >= 95.0, f"{name} dropped retain accuracy to {ra}"
    assert result.sample_grads > 0 and result.seconds > 0
    if name != "retrain":
        assert result.conflict, "every method reports gradient conflict"
        assert all(-1.0 <= c <= 1.0 for _, c in result.conflict)


def test_salun_only_moves_salient_weights(trained):
    model, forget, retain = trained
    model = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method = build_method("salun", sparsity=0.2)
    unlearn(model, forget, retain, UnlearnConfig(method="salun", epochs=2, lr=0.05, optimizer="sgd"), method=method)
    for n, p in model.named_parameters():
        frozen = method.grad_mask[n] == 0
        assert torch.equal(p.detach()[frozen], before[n][frozen])
    assert 0.1 < sum(m.sum() for m in method.grad_mask.values()) / sum(m.numel() for m in method.grad_mask.values()) < 0.4


def test_lur_saliency_reinit_changes_only_the_last_layers(trained):
    model, forget, retain = trained
    model = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    build_method("lur", reinit_fraction=0.1, reinit_layers=1).prepare(model, forget, retain)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"net.3.weight"}


def test_bad_method_configs_are_user_errors():
    with pytest.raises(UserError, match="unknown method"):
        build_method("magic")
    with pytest.raises(UserError, match="bad config"):
        build_method("lur", learning_rate=1)
    with pytest.raises(UserError, match="gamma should be float"):
        build_method("l1_sparse", gamma="5e-05")
    with pytest.raises(UserError, match="order"):
        build_method("lur", order="third")
    with pytest.raises(UserError, match="optimizer"):
        UnlearnConfig.from_dict({"optimizer": "lbfgs"})
    with pytest.raises(UserError, match="unknown keys"):
        UnlearnConfig.from_dict({"epoch": 3})


def test_retain_stream_cycles_and_covers_everything():
    stream = RetainStream(10, 4, torch.Generator().manual_seed(0))
    seen = torch.cat([stream.next() for _ in range(2)])
    assert len(set(seen.tolist())) == 8  # one pass without repeats
    batches = [stream.next() for _ in range(10)]
    assert all(len(b) == 4 for b in batches)  # never a short or empty batch


def test_config_values_are_type_checked():
    # PyYAML reads "3e-05" (no dot) as a string: that must fail at start-up, not mid-run.
    with pytest.raises(UserError, match="lr should be float"):
        UnlearnConfig.from_dict({"lr": "3e-05"})
    with pytest.raises(UserError, match="epochs should be int"):
        UnlearnConfig.from_dict({"epochs": 2.5})
    assert UnlearnConfig.from_dict({"lr": 1}).lr == 1  # an int where a float is expected is fine


def test_salun_mask_keeps_exactly_the_requested_share_even_with_zero_gradients():
    model = MLP(2, 4, hidden=8)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # every gradient but the last bias is exactly 0: thresholds would tie
    x, y = blobs(n_per_class=5)
    method = build_method("salun", sparsity=0.25)
    method.prepare(model, (x, y), (x, y))
    kept = sum(int(m.sum()) for m in method.grad_mask.values())
    total = sum(m.numel() for m in method.grad_mask.values())
    assert kept == int(0.25 * total)
