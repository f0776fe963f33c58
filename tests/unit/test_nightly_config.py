"""The nightly's typed config: the shipped file equals the defaults; typos fail early."""

from pathlib import Path

import pytest
import yaml

from pipeline.errors import UserError
from pipeline.ops.nightly_config import NightlyConfig

SHIPPED = Path(__file__).resolve().parents[2] / "pipeline/configs/nightly.yaml"


def test_shipped_file_is_the_defaults():
    assert NightlyConfig.from_dict(yaml.safe_load(SHIPPED.read_text())).to_dict() == NightlyConfig().to_dict()


@pytest.mark.parametrize("data, message", [
    ({"gates": {"max_ta_dorp": 1}}, "unknown keys"),
    ({"retrain": {"after_rounds": "five"}}, "should be int"),
    ({"grace_days": "7"}, "should be float"),
    ({"methd": "lur"}, "unknown keys"),
])
def test_bad_config_is_a_user_error(data, message):
    with pytest.raises(UserError, match=message):
        NightlyConfig.from_dict(data)
