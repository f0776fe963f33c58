"""Config files and addresses a user gets wrong: one UserError line each, before any work."""

import math

import pytest

from pipeline.config import TrainConfig, read_yaml
from pipeline.errors import UserError
from pipeline.ops.home import Home
from pipeline.ops.nightly_config import NightlyConfig
from pipeline.ray.cluster import check_reachable


@pytest.mark.parametrize("content,match", [
    (b"gates: {max_ta_drop: 1.0\n", "not valid YAML at line 2"),
    (b"\xff\xfe\x00", "not a UTF-8 text file"),
])
def test_read_yaml_says_what_is_wrong_in_one_line(tmp_path, content, match):
    p = tmp_path / "c.yaml"
    p.write_bytes(content)
    with pytest.raises(UserError, match=match) as e:
        read_yaml(p)
    assert "\n" not in str(e.value)


def test_read_yaml_on_a_directory_or_nothing(tmp_path):
    with pytest.raises(UserError, match="Is a directory"):
        read_yaml(tmp_path)
    with pytest.raises(UserError, match="not found"):
        read_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize("data,match", [
    ({"method": "bogus"}, "unknown unlearning method 'bogus'"),
    ({"method": "retrain"}, "unknown unlearning method 'retrain'"),
    ({"grace_days": -1.0}, "grace_days must not be negative"),
    ({"serve_wait_s": -5.0}, "serve_wait_s must not be negative"),
    ({"lock_stale_minutes": 0.0}, "lock_stale_minutes must be at least 2.0"),
    ({"retrain": {"after_rounds": -1}}, "after_rounds must not be negative"),
    ({"gates": {"max_ta_drop": math.nan}}, "finite"),
    ({"gates": {"forget_margin": math.inf}}, "finite"),
])
def test_nightly_config_refuses_values_that_make_no_sense(data, match):
    with pytest.raises(UserError, match=match):
        NightlyConfig.from_dict(data)


def test_nightly_options_are_checked_after_the_flags_are_applied():
    cfg = NightlyConfig.from_dict({})
    cfg.gates.max_ra_drop = math.nan
    with pytest.raises(UserError, match="max_ra_drop must be a finite number"):
        cfg.validate("options")


@pytest.mark.parametrize("data,match", [
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"arch": "bogus"}, "unknown architecture 'bogus'"),
    ({"lr": 0.0}, "lr must be positive"),
    ({"weight_decay": -1.0}, "weight_decay must not be negative"),
])
def test_train_config_refuses_values_that_cannot_train(data, match):
    with pytest.raises(UserError, match=match):
        TrainConfig.from_dict(data)


@pytest.mark.parametrize("address,match", [
    ("not-a-url", "is not a Ray address"),
    ("http://127.0.0.1:8265", "is a dashboard / Jobs API URL"),
    ("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),
    ("ray://127.0.0.1:1", "cannot reach the Ray cluster at ray://127.0.0.1:1"),
    ("[::1]:1", "cannot reach the Ray cluster at \\[::1\\]:1"),  # IPv6 is an address, just not reachable
])
def test_a_bad_ray_address_fails_before_anything_starts(address, match):
    with pytest.raises(UserError, match=match):
        check_reachable(address)


def test_auto_without_a_started_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with pytest.raises(UserError, match="no Ray cluster was started on this machine"):
        check_reachable("auto")
    check_reachable("local")  # nothing to check: a local Ray starts on first use


@pytest.mark.parametrize("content", ["{bad", "[]", '{"dataset": "digits"}'])
def test_a_corrupt_home_json_is_one_line(tmp_path, content):
    (tmp_path / "home.json").write_text(content)
    with pytest.raises(UserError, match="corrupt"):
        Home(tmp_path).state()


def test_an_empty_unlearn_home_means_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("UNLEARN_HOME", "")
    monkeypatch.chdir(tmp_path)
    assert Home.from_env().root == (tmp_path / ".unlearn").resolve()


def test_sqlite_urls_with_options_are_files_too(tmp_path, monkeypatch):
    """A mistyped SQLite path is refused; the same file with URL options is not."""
    (tmp_path / "home.json").write_text('{"dataset": "digits", "model_name": "unlearn-digits"}')
    monkeypatch.setenv("UNLEARN_LEDGER_URL", f"sqlite:///{tmp_path / 'typo.db'}")
    with pytest.raises(UserError, match="no ledger at"):
        Home(tmp_path).ledger()
    monkeypatch.setenv("UNLEARN_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}?timeout=30")
    (tmp_path / "ledger.db").touch()
    Home(tmp_path).ledger()  # opens; the query string is not part of the path
