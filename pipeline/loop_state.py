"""The unlearning loop's full state, for checkpoint and resume: weights, optimizer,
RNGs, the retain stream's position, the step, and the telemetry so far.

Saved as safetensors (every tensor) plus JSON (everything else). Nothing is pickled,
so resuming never runs code from a checkpoint file, as with model weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import UserError

TENSORS, META = "loop_state.safetensors", "loop_state.json"


def capture(model, opt, gen: torch.Generator, stream, result, epochs_done: int, step: int) -> dict[str, Any]:
    tensors = {f"model.{k}": v.detach() for k, v in model.state_dict().items()}
    optim = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in optim["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    tensors["rng.generator"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    device = next(model.parameters()).device
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    tensors["stream.perm"] = stream.perm
    meta = {
        "epochs_done": epochs_done,
        "step": step,
        "optim_param_groups": optim["param_groups"],
        "optim_scalars": scalars,
        "stream_pos": stream.pos,
        "result": {"seconds": result.seconds, "sample_grads": result.sample_grads,
                   "conflict": result.conflict, "losses": result.losses, "step_times": result.step_times},
    }
    return {"tensors": tensors, "meta": meta}


def restore(state: dict[str, Any], model, opt, gen: torch.Generator, stream, result) -> tuple[int, int]:
    """Load `state` into the live objects; returns (epochs_done, step)."""
    t, meta = state["tensors"], state["meta"]
    device = next(model.parameters()).device
    model.load_state_dict({k[len("model."):]: v for k, v in t.items() if k.startswith("model.")})
    optim_state: dict[int, dict[str, Any]] = {}
    for k, v in t.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            optim_state.setdefault(int(idx), {})[name] = v.to(device) if name != "step" else v
    for idx, st in meta["optim_scalars"].items():
        optim_state.setdefault(int(idx), {}).update(st)
    opt.load_state_dict({"state": optim_state, "param_groups": meta["optim_param_groups"]})
    gen.set_state(t["rng.generator"].cpu())
    torch.set_rng_state(t["rng.torch"].cpu())
    if "rng.cuda" in t and device.type == "cuda":
        torch.cuda.set_rng_state(t["rng.cuda"].cpu(), device)
    stream.perm, stream.pos = t["stream.perm"].cpu(), meta["stream_pos"]
    r = meta["result"]
    result.seconds, result.sample_grads = r["seconds"], r["sample_grads"]
    result.conflict, result.losses = [tuple(c) for c in r["conflict"]], list(r["losses"])
    result.step_times = list(r.get("step_times", []))  # absent in states saved before it was kept
    return meta["epochs_done"], meta["step"]


def save(directory: Path, state: dict[str, Any]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state["tensors"].items()}
    save_file(tensors, str(directory / TENSORS))
    tmp = directory / (META + ".tmp")
    tmp.write_text(json.dumps(state["meta"]))
    os.replace(tmp, directory / META)  # the JSON lands last: a state with it is whole


def load(directory: Path) -> dict[str, Any]:
    directory = Path(directory)
    if not (directory / META).exists() or not (directory / TENSORS).exists():
        raise UserError(f"{directory} holds no loop state ({TENSORS} and {META})")
    return {"tensors": load_file(str(directory / TENSORS)), "meta": json.loads((directory / META).read_text())}
