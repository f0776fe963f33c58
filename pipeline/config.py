"""Typed configs: the mechanism every run config shares, and the training recipe.

A config is a pydantic model (`ConfigModel`): unknown keys are refused, numbers are
checked for type (YAML reads `3e-05` as a string) and bounds (`Field(ge=..)`), NaN and
inf are refused, and a mistake becomes one `UserError` line that names every bad field.
Each default lives on its field, with a description the CLI help and the JSON Schema
(`pipeline/configs/schema/`) are generated from. The configs themselves live next to
what they configure: `TrainConfig` here, `UnlearnConfig` beside the loop
(`pipeline.unlearn`), `GateConfig` and `NightlyConfig` in the operations wing.

Nested kwargs are validated against the constructor they are passed to
(`check_kwargs`): a typo in `model_kwargs` or `method_kwargs` fails when the config is
read, not when a worker builds the model.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from pipeline.errors import UserError

C = TypeVar("C", bound="ConfigModel")


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """A YAML file's content, or one line that says what is wrong with the file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not a UTF-8 text file") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{what} {path} is not valid YAML{where}: {problem}") from None
    except ValueError as e:  # a value YAML recognises but cannot build, e.g. the date 2024-02-30
        raise UserError(f"{what} {path}: {e}") from None


# ---- one line per mistake ---------------------------------------------------------------

_TYPES = {"int_type": "int", "float_type": "float", "bool_type": "bool", "string_type": "str",
          "dict_type": "a mapping", "list_type": "a list", "model_type": "a mapping"}


def _explain(err: dict[str, Any], model: type[BaseModel] | None) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        parent = ".".join(str(p) for p in err["loc"][:-1])
        allowed = _allowed(model, err["loc"][:-1])
        return (f"unknown keys ['{err['loc'][-1]}']" + (f" in {parent}" if parent else "")
                + (f"; allowed: {allowed}" if allowed else ""))
    if kind in _TYPES:
        return f"{loc} should be {_TYPES[kind]}, got {value!r}"
    if kind == "finite_number":
        return f"{loc} must be a finite number, got {value!r}"
    if kind == "greater_than_equal":
        bound = ctx["ge"]
        return f"{loc} must not be negative, got {value!r}" if bound == 0 else f"{loc} must be at least {bound}, got {value!r}"
    if kind == "greater_than":
        return f"{loc} must be positive, got {value!r}" if ctx["gt"] == 0 else f"{loc} must exceed {ctx['gt']}, got {value!r}"
    if kind in ("less_than_equal", "less_than"):
        return f"{loc} must be at most {ctx.get('le', ctx.get('lt'))}, got {value!r}"
    if kind == "literal_error":
        return f"{loc} must be {ctx['expected']}, not {value!r}"
    if kind == "missing":
        return f"{loc} is required"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def _allowed(model: type[BaseModel] | None, path: tuple) -> list[str] | None:
    for part in path:  # walk down to the nested model the unknown key sits in
        field = model.model_fields.get(str(part)) if model else None
        model = field.annotation if field and isinstance(field.annotation, type) \
            and issubclass(field.annotation, BaseModel) else None
    return sorted(model.model_fields) if model else None


def explain(e: ValidationError, where: str, model: type[BaseModel] | None = None) -> str:
    """Every error of a validation, on one line: `where: a must be positive, got 0; b ...`."""
    return f"{where}: " + "; ".join(_explain(err, model) for err in e.errors())


class ConfigModel(BaseModel):
    """Base of every config: airtight (unknown keys refused), typed strictly (no string
    for a number, no bool for an int), finite."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @classmethod
    def from_dict(cls: type[C], data: Any, where: str = "config") -> C:
        if not isinstance(data, dict):
            raise UserError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise UserError(explain(e, where, cls)) from None

    def validate(self, where: str) -> None:
        """Check again after fields were set by hand (CLI flags over a config file)."""
        type(self).from_dict(self.to_dict(), where)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def describe(model: type[BaseModel], name: str) -> str:
    """A field's description and default, for --help generated from the config."""
    field = model.model_fields[name]
    return f"{field.description} (default: {field.default})"


# ---- kwargs checked against the constructor they are for --------------------------------

def _kwargs_model(fn: Callable, name: str, skip: tuple[str, ...]) -> type[BaseModel]:
    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name == "self" or p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = hints.get(p.name, Any)
        if hint in (int, float, bool, str):
            hint = Annotated[hint, Strict()]  # numbers strictly; sequences may come as YAML lists
        fields[p.name] = (hint, ... if p.default is p.empty else p.default)
    return create_model(name, __config__=ConfigDict(extra="forbid", allow_inf_nan=False), **fields)


def check_kwargs(fn: Callable, kwargs: dict[str, Any], where: str, skip: tuple[str, ...] = ()) -> None:
    """Raise a UserError when `fn(**kwargs)` (plus the `skip` arguments the caller supplies)
    would get an unknown keyword or a value of the wrong type."""
    if any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values()):
        return  # takes anything: its own validation applies
    model = _kwargs_model(fn, "kwargs", skip)
    try:
        model.model_validate(kwargs)
    except ValidationError as e:
        raise UserError(explain(e, where, model)) from None


class TrainConfig(ConfigModel):
    """How the original model (and the retrain oracle) is trained: to memorisation.

    The field trains its originals to ~100 % train accuracy (ResNet-18 on CIFAR-10), so
    the forget set leaves a mark to remove. No weight decay for that reason.
    """

    arch: str = Field("cnn", description="architecture: mlp, cnn or resnet18")
    model_kwargs: dict[str, Any] = Field(default_factory=dict,
                                         description="keyword arguments of the architecture's constructor")
    epochs: int = Field(16, ge=1, description="passes over the train set")
    batch_size: int = Field(128, ge=1, description="samples per step (split over the workers)")
    lr: float = Field(0.05, gt=0, description="peak learning rate of the one-cycle schedule (SGD, momentum 0.9)")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty; 0 so the original memorises, as the field's do")
    seed: int = Field(0, ge=0, description="seed of the initial weights and the batch order")

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        from pipeline.models import ARCHITECTURES  # here, not at the top: `unlearn --help` needs no torch

        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        return arch

    @model_validator(mode="after")
    def _model_kwargs_fit_the_architecture(self) -> "TrainConfig":
        from pipeline.models import ARCHITECTURES, BUILT_BY_BUILD_MODEL

        try:
            check_kwargs(ARCHITECTURES[self.arch].__init__, self.model_kwargs, f"{self.arch} model_kwargs",
                         skip=BUILT_BY_BUILD_MODEL)
        except UserError as e:
            raise ValueError(str(e)) from None
        return self
