"""The method registry: name -> class. Adding a method = one file + one line here + one config."""

from __future__ import annotations

import inspect
from typing import Any

from pipeline.errors import UserError
from pipeline.methods.finetune import Finetune
from pipeline.methods.grad_ascent import GradAscent
from pipeline.methods.l1_sparse import L1Sparse
from pipeline.methods.lur import LUR
from pipeline.methods.neggrad_plus import NegGradPlus
from pipeline.methods.random_label import RandomLabel
from pipeline.methods.retrain import Retrain
from pipeline.methods.salun import SalUn
from pipeline.methods.scrub import Scrub

METHODS: dict[str, type] = {
    "lur": LUR,
    "finetune": Finetune,
    "grad_ascent": GradAscent,
    "neggrad_plus": NegGradPlus,
    "random_label": RandomLabel,
    "salun": SalUn,
    "scrub": Scrub,
    "l1_sparse": L1Sparse,
    "retrain": Retrain,
}
ORACLE = "retrain"


def build_method(name: str, **kwargs: Any):
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    # Configs come from YAML, where "5e-05" (no dot) is a string: check numbers up front.
    for key, param in inspect.signature(METHODS[name].__init__).parameters.items():
        default, value = param.default, kwargs.get(key)
        if key in kwargs and isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"method {name}: {key} should be a number, got {value!r} (write 5e-5 as 0.00005 in YAML)")
    try:
        return METHODS[name](**kwargs)
    except TypeError as e:  # an unknown or missing keyword in a config
        raise UserError(f"method {name}: bad config ({e})") from None
    except ValueError as e:
        raise UserError(str(e)) from None
