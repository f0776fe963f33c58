"""cluster.yaml passes Ray's own launcher schema (offline), and the schema check can fail."""

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def validate(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_yaml_is_valid_for_the_ray_launcher():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate(config)
    types = config["available_node_types"]
    assert types["gpu_worker"]["min_workers"] == 0  # GPU nodes scale from zero
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}  # no training on the head
    assert config["docker"]["image"].startswith("rayproject/ray:2.60.0")


@pytest.mark.parametrize("mutate", [
    lambda c: c.update(worker_nodes_typo=1),
    lambda c: c["available_node_types"]["gpu_worker"].update(max_workers="many"),
    lambda c: c.update(head_node_type="nope"),
])
def test_a_broken_cluster_yaml_is_rejected(mutate):
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    mutate(config)
    with pytest.raises(Exception):
        validate(config)
