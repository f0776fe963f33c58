import pickle

import pytest
import torch

from pipeline.errors import UserError
from pipeline.models import build_model, config_hash, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("arch,shape", [("mlp", (64,)), ("cnn", (1, 28, 28)), ("cnn", (1, 8, 8)), ("resnet18", (3, 32, 32))])
def test_build_and_forward(arch, shape):
    kwargs = {"width": 8} if arch == "resnet18" else {}
    model = build_model(arch, shape, 10, **kwargs).eval()
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_cnn_on_flat_data_says_what_to_do():
    with pytest.raises(UserError, match="mlp"):
        build_model("cnn", (64,), 10)


def test_checkpoint_round_trip(tmp_path):
    model = build_model("cnn", (1, 8, 8), 10, channels=[4, 8], hidden=16).eval()
    card = {"arch": "cnn", "model_kwargs": {"channels": [4, 8], "hidden": 16}, "input_shape": [1, 8, 8], "num_classes": 10}
    save_checkpoint(tmp_path, model, card)
    loaded, loaded_card = load_checkpoint(tmp_path)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(loaded.eval()(x), model(x))
    assert loaded_card["arch"] == "cnn"


def test_loading_never_unpickles(tmp_path):
    # A pickle in place of the weights must be refused, never executed.
    class Boom:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('%s').write_text('pwned')" % (tmp_path / "flag"),))

    model = build_model("mlp", (4,), 2).eval()
    card = {"arch": "mlp", "model_kwargs": {}, "input_shape": [4], "num_classes": 2}
    save_checkpoint(tmp_path, model, card)
    (tmp_path / "model.safetensors").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(Exception):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "flag").exists()


def test_config_hash_is_stable_and_order_free():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_model_kwargs_typo_is_a_user_error():
    with pytest.raises(UserError, match="bad model_kwargs"):
        build_model("mlp", (4,), 2, hiden=3)


def test_resolve_device_cpu_and_user_errors():
    import torch

    from pipeline.devices import resolve_device, rng_devices
    from pipeline.errors import UserError

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert rng_devices(torch.device("cpu")) == []
    with pytest.raises(UserError, match="choose auto, cpu or cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")
