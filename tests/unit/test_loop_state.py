"""Checkpoint and resume of the plain loop, without Ray: a run stopped after an epoch and
resumed from its saved state ends where an uninterrupted run ends."""

import copy

import pytest
import torch

from pipeline import loop_state
from pipeline.models import build_model
from pipeline.ray.train import RayOptions, plan
from pipeline.unlearn import LoopHooks, UnlearnConfig, unlearn


def blobs(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 8, generator=g) + 3 * torch.nn.functional.one_hot(y, 8).float()
    return x, y


@pytest.mark.parametrize("method,opt", [("lur", "adam"), ("random_label", "sgd"), ("scrub", "adam")])
def test_resume_from_a_saved_epoch_matches_an_uninterrupted_run(tmp_path, method, opt):
    x, y = blobs()
    forget, retain = (x[:40], y[:40]), (x[40:], y[40:])
    torch.manual_seed(0)
    model = build_model("mlp", (8,), 3, hidden=16)
    cfg = UnlearnConfig(method=method, epochs=3, lr=0.01, optimizer=opt, forget_batch=16, retain_batch=32,
                        conflict_every=2)
    full = copy.deepcopy(model)
    expected = unlearn(full, forget, retain, cfg)

    saved = {}

    def keep_first(epochs_done, state):
        if epochs_done == 1:
            loop_state.save(tmp_path, state)
            saved["step"] = state["meta"]["step"]

    unlearn(copy.deepcopy(model), forget, retain, cfg, hooks=LoopHooks(on_epoch_end=keep_first))
    resumed = copy.deepcopy(model)  # a fresh worker: original weights, then the checkpoint
    result = unlearn(resumed, forget, retain, cfg, hooks=LoopHooks(resume=loop_state.load(tmp_path)))
    assert saved["step"] == 3
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert result.conflict == expected.conflict and result.losses == expected.losses


def test_loop_state_is_not_pickle(tmp_path):
    (tmp_path / "loop_state.json").write_text("{}")
    (tmp_path / "loop_state.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(Exception) as e:
        loop_state.load(tmp_path)
    assert "pickle" not in str(e.value).lower()


def test_plan_replicates_small_forget_sets_and_shards_large_ones():
    cfg = UnlearnConfig(forget_batch=32, retain_batch=64)
    tiny = plan(3, cfg, RayOptions(workers=8))
    assert tiny["replicate_forget"] and tiny["forget_batch_per_worker"] == 32 and tiny["steps_per_epoch"] == 1
    big = plan(1000, cfg, RayOptions(workers=4))
    assert not big["replicate_forget"] and big["forget_batch_per_worker"] == 8 and big["pad_forget_to"] == 4
    assert big["retain_batch_per_worker"] == 16 and big["steps_per_epoch"] == 32


def test_plan_rejects_batches_smaller_than_the_worker_count():
    from pipeline.errors import UserError

    with pytest.raises(UserError, match="retain_batch"):
        plan(100, UnlearnConfig(retain_batch=4), RayOptions(workers=8))
    with pytest.raises(UserError, match="workers must be at least 1"):
        plan(100, UnlearnConfig(), RayOptions(workers=0))
