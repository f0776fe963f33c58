"""Every shipped config file is read and validated the way a run reads it; the generated
files (JSON Schemas, nightly.yaml) are current; a broken copy of each kind is refused."""

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from jobs.schemas import generated
from jobs.tune import grid_points
from pipeline.configs import (
    CONFIG_DIR,
    SCHEMA_DIR,
    load_method_configs,
    load_run_configs,
    method_config,
    nightly_method_config,
)
from pipeline.errors import UserError
from pipeline.ops.nightly_config import NightlyConfig

ROOT = Path(__file__).resolve().parents[2]
GRIDS = sorted(CONFIG_DIR.glob("*-grid*.yaml"))
NIGHTLY = CONFIG_DIR / "nightly.yaml"
# Dataset configs: the shipped ones and the tuned ones the README's benchmarks ran with.
DATASETS = sorted(set(CONFIG_DIR.glob("*.yaml")) - set(GRIDS) - {NIGHTLY}) + sorted(ROOT.glob("benchmarks/**/config.yaml"))
# A grid's base config: the dataset config it tunes (round 2 starts from round 1's winners).
GRID_BASE = {"fashion-mnist-grid-round2.yaml": ROOT / "benchmarks/fashion-mnist/tune-round1/config.yaml"}


def schema(kind):
    return json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())


def test_every_config_file_is_covered():
    assert {p.name for p in CONFIG_DIR.glob("*.yaml")} == {p.name for p in DATASETS if p.parent == CONFIG_DIR} \
        | {p.name for p in GRIDS} | {NIGHTLY.name}
    assert len(DATASETS) >= 6 and len(GRIDS) >= 4


@pytest.mark.parametrize("path", DATASETS, ids=lambda p: str(p.relative_to(ROOT)))
def test_dataset_config_loads_and_every_entry_validates(path):
    configs, train = load_run_configs(path)
    assert train.epochs >= 1
    for scenario, spec in (("random", "random:0.1"), ("class", "class:1")):
        for method in configs.get(scenario, {}):
            assert method_config(configs, spec, method, seed=0).method == method
    for method in configs.get("nightly", {}):
        assert nightly_method_config(configs, method, seed=0).method == method
    jsonschema.validate(yaml.safe_load(path.read_text()), schema("dataset"))


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_grid_points_validate_against_their_base_config(path):
    base = GRID_BASE.get(path.name, CONFIG_DIR / f"{path.name.split('-grid')[0]}.yaml")
    configs, _ = load_run_configs(base)
    grids = load_method_configs(path)
    for scenario, spec in (("random", "random:0.1"), ("class", "class:1")):
        for method, grid in grids.get(scenario, {}).items():
            assert grid_points(method_config(configs, spec, method, seed=0), grid)
    jsonschema.validate(grids, schema("grid"))


def test_nightly_yaml_fits_its_schema():  # that it holds the defaults: test_nightly_config.py
    jsonschema.validate(yaml.safe_load(NIGHTLY.read_text()), schema("nightly"))


def test_generated_files_are_current():
    stale = [str(p) for p, text in generated().items() if p.read_text() != text]
    assert not stale, f"regenerate with `make configs`: {stale}"


# (mutation, the error's text, whether the JSON Schema sees it too: ranges that only a
# constructor checks, and method_kwargs, are beyond what the schema says)
@pytest.mark.parametrize("mutate, message, in_schema", [
    (lambda c: c["train"].update(lr="5e-05"), "lr should be float", True),  # YAML reads 5e-05 as a string
    (lambda c: c["random"]["lur"].update(epoch=3), "unknown keys ['epoch']", True),
    (lambda c: c["random"]["lur"]["method_kwargs"].update(alpa=0.1), "unknown keys ['alpa']", False),
    (lambda c: c["class"]["salun"].update(method_kwargs={"sparsity": 1.5}), "sparsity", False),
    (lambda c: c["train"]["model_kwargs"].update(chanels=[8, 8]), "unknown keys ['chanels']", False),
    (lambda c: c.update(ranodm={}), "unknown sections ['ranodm']", True),
])
def test_a_broken_dataset_config_is_refused_on_load(tmp_path, mutate, message, in_schema):
    configs = yaml.safe_load((CONFIG_DIR / "digits.yaml").read_text())
    mutate(configs)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(configs))
    with pytest.raises(UserError, match=re.escape(message)):
        load_run_configs(tmp_path / "c.yaml")
    if in_schema:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(configs, schema("dataset"))


def test_a_broken_nightly_config_lists_every_mistake_on_one_line():
    with pytest.raises(UserError) as e:
        NightlyConfig.from_dict({"gates": {"max_ta_drop": "1"}, "grace_days": -1, "methd": "lur"})
    text = str(e.value)
    assert "\n" not in text
    assert "gates.max_ta_drop should be float" in text and "grace_days must not be negative" in text
    assert "unknown keys ['methd']" in text
