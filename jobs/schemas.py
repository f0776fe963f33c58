"""Files generated from the typed configs: JSON Schemas for the YAML files, and nightly.yaml.

    python -m jobs.schemas            # rewrite them (`make configs`)
    python -m jobs.schemas --check    # exit 1 if one is stale (the unit tests check this too)

The pydantic models are the one home of every default and bound; these files are views
of them for editors (`# yaml-language-server: $schema=...` at the top of each YAML) and
for people reading the shipped settings. Edit the models, then regenerate.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.config import ConfigModel, TrainConfig
from pipeline.configs import ANCHORS, CONFIG_DIR, SCENARIOS, SCHEMA_DIR
from pipeline.ops.nightly_config import NightlyConfig
from pipeline.unlearn import UnlearnConfig

DRAFT = "https://json-schema.org/draft/2020-12/schema"
NOTES = {"^_": {"description": "a note (what won in tuning, and where); ignored"}}


def _schema(model: type[ConfigModel], title: str, description: str) -> dict[str, Any]:
    return {"$schema": DRAFT, "title": title, "description": description, **model.model_json_schema()}


def nightly_schema() -> dict[str, Any]:
    return _schema(NightlyConfig, "unlearn nightly config",
                   "`unlearn nightly --config FILE`: every key optional, unknown keys refused.")


def dataset_schema() -> dict[str, Any]:
    """A dataset's config file: `train` plus one section of method entries per scenario."""
    entry = copy.deepcopy(UnlearnConfig.model_json_schema())
    for key in ("method", "seed"):  # set by the scenario's key and the run's --seed
        entry["properties"].pop(key)
    entry["title"] = "method entry"
    entry["patternProperties"] = NOTES
    defs = {**entry.pop("$defs", {}), "MethodEntry": entry}
    train = TrainConfig.model_json_schema()
    defs.update(train.pop("$defs", {}))
    defs["TrainConfig"] = train
    scenario = {"type": "object", "additionalProperties": {"$ref": "#/$defs/MethodEntry"}}
    return {
        "$schema": DRAFT, "title": "unlearn dataset config",
        "description": "train: how the original model is trained; random / class / nightly: each method's "
                       "settings for that kind of forgetting (nightly: the batch's small forget sets).",
        "type": "object", "required": ["train"], "additionalProperties": False, "patternProperties": NOTES,
        "properties": {"train": {"$ref": "#/$defs/TrainConfig"},
                       **{s: {**scenario, "description": f"method -> settings for {s} forgetting"} for s in SCENARIOS},
                       ANCHORS: {"type": "object", "description": "holds YAML anchors merged into entries"}},
        "$defs": defs,
    }


def grid_schema() -> dict[str, Any]:
    values = {"type": "array", "minItems": 1, "description": "the values to try"}
    method = {"type": "object", "additionalProperties": values,
              "description": "an UnlearnConfig key, or method_kwargs.NAME, -> values"}
    return {"$schema": DRAFT, "title": "unlearn tuning grid", "type": "object", "additionalProperties": False,
            "properties": {s: {"type": "object", "additionalProperties": method} for s in ("random", "class")}}


def nightly_yaml() -> str:
    """The defaults, spelled out, with each field's description above it."""
    lines = ["# yaml-language-server: $schema=schema/nightly.schema.json",
             "# `unlearn nightly --config pipeline/configs/nightly.yaml`: the shipped defaults, spelled out.",
             "# Generated from pipeline/ops/nightly_config.py (`make configs`): edit the model, not this file.",
             "# Every key is optional; an unknown key is an error."]

    def walk(model: ConfigModel, indent: str) -> None:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            lines.append(f"{indent}# {field.description}")
            if isinstance(value, ConfigModel):
                lines.append(f"{indent}{name}:")
                walk(value, indent + "  ")
            else:
                lines.append(f"{indent}{name}: {json.dumps(value)}")

    walk(NightlyConfig(), "")
    return "\n".join(lines) + "\n"


def generated() -> dict[Path, str]:
    dump = lambda s: json.dumps(s, indent=2) + "\n"  # noqa: E731
    return {SCHEMA_DIR / "nightly.schema.json": dump(nightly_schema()),
            SCHEMA_DIR / "dataset.schema.json": dump(dataset_schema()),
            SCHEMA_DIR / "grid.schema.json": dump(grid_schema()),
            CONFIG_DIR / "nightly.yaml": nightly_yaml()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale; write nothing")
    args = ap.parse_args(argv)
    stale = [p for p, text in generated().items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"stale: {p} (run `make configs`)", file=sys.stderr)
        return 1 if stale else 0
    for p, text in generated().items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    print(f"wrote {len(generated())} files under {CONFIG_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
