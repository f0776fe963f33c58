"""The shipped config files, and how a run finds and reads one.

A dataset's config file (`digits.yaml`, `fashion-mnist.yaml`, `default.yaml` for any
`parquet:DIR`) holds a `train` section (a `TrainConfig`) and one section per scenario:
`random` and `class` (settings tuned per kind of forgetting) and optionally `nightly`
(the nightly batch's small forget sets). Each scenario maps a method name to an
`UnlearnConfig`; keys starting with `_` are notes. `*-grid.yaml` files are tuning grids,
`nightly.yaml` the nightly batch's settings (`pipeline.ops.nightly_config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import TrainConfig, read_yaml
from pipeline.errors import UserError
from pipeline.unlearn import UnlearnConfig

CONFIG_DIR = Path(__file__).resolve().parent
SCHEMA_DIR = CONFIG_DIR / "schema"


def default_config_path(dataset: str) -> Path:
    """The shipped config for a dataset: `NAME.yaml`, else `default.yaml` (any parquet:DIR)."""
    name = dataset if not dataset.startswith("parquet:") else "default"
    path = CONFIG_DIR / f"{name}.yaml"
    return path if path.exists() else CONFIG_DIR / "default.yaml"


def default_grid_path(config: Path) -> Path:
    """The tuning grid beside a shipped config: `NAME-grid.yaml`."""
    return CONFIG_DIR / f"{Path(config).stem}-grid.yaml"


def load_method_configs(path: Path) -> dict[str, Any]:
    data = read_yaml(path, "config file")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with a 'train' section and one section per scenario")
    return data


SCENARIOS = ("random", "class", "nightly")
ANCHORS = "loop"  # a section that only holds YAML anchors (`loop: &loop {...}`), merged into entries


def load_run_configs(path: Path) -> tuple[dict[str, Any], TrainConfig]:
    """A dataset's config file: the method sections and the typed `train` section.

    The whole file is checked when it is read, every method entry of every scenario
    included: a typo in a method nobody runs tonight is still a broken file."""
    configs = load_method_configs(path)
    if not isinstance(configs.get("train"), dict):
        raise UserError(f"{path}: missing the 'train' section")
    unknown = sorted(k for k in configs if k not in ("train", ANCHORS, *SCENARIOS) and not str(k).startswith("_"))
    if unknown:
        raise UserError(f"{path}: unknown sections {unknown}; allowed: train, {', '.join(SCENARIOS)} "
                        f"(and '{ANCHORS}' or _notes)")
    train = TrainConfig.from_dict(configs["train"], f"{path}: train section")
    for scenario in SCENARIOS:
        section = configs.get(scenario)
        if section is None:
            continue
        if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
            raise UserError(f"{path}: section {scenario!r} must map method names to their settings")
        for method in section:
            _entry(section, method, 0, f"{path}: {scenario}.{method}")
    return configs, train


def scenario_of(forget_spec: str) -> str:
    """Configs are tuned per scenario: class-wise and random forgetting want different settings."""
    return "class" if forget_spec.startswith("class:") else "random"


def _entry(section: dict[str, Any], method: str, seed: int, where: str) -> UnlearnConfig:
    data = {k: v for k, v in section[method].items() if not k.startswith("_")}
    return UnlearnConfig.from_dict({**data, "method": method, "seed": seed}, where)


def method_config(configs: dict[str, Any], forget_spec: str, method: str, seed: int) -> UnlearnConfig:
    section = configs.get(scenario_of(forget_spec), {})
    if method not in section:
        raise UserError(f"no config for method {method!r} in scenario {scenario_of(forget_spec)!r}")
    return _entry(section, method, seed, f"{method} config")


def nightly_method_config(configs: dict[str, Any], method: str, seed: int) -> UnlearnConfig:
    """The dataset config's `nightly` entry for the method (small forget sets), else its
    `random` one: deletions are scattered samples, like random forgetting."""
    section = configs.get("nightly") or {}
    if method not in section:
        return method_config(configs, "random:0.1", method, seed)
    return _entry(section, method, seed, f"nightly {method} config")
