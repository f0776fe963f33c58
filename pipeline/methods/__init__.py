"""The method registry: name -> class. Adding a method = one file + one line here + one config."""

from __future__ import annotations

from typing import Any

from pipeline.config import check_kwargs
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
    """The method `name`, built from its flat kwargs; a mistake is one UserError line."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    # Configs come from YAML, where "5e-05" (no dot) is a string: types are checked up front.
    check_kwargs(METHODS[name].__init__, kwargs, f"method {name}: bad config")
    try:
        return METHODS[name](**kwargs)
    except ValueError as e:  # the constructor's own range checks
        raise UserError(str(e)) from None
