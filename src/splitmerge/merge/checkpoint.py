"""Training checkpoints, written and restored the same way on one process, under DDP and under FSDP2.

``RUN/checkpoints/step-NNNNNN/`` holds
- ``composer/``: the Composer as `Composer.save_pretrained` writes it (loadable on its own);
- ``optimizer.safetensors`` + ``optimizer.json``: AdamW's moments keyed ``<parameter name>/<slot>``, its param
  groups (parameters by name) and any non-tensor state;
- ``ema.safetensors``: the weights' moving average by parameter name (when the run keeps one);
- ``state.json``: the step, written last (a folder without it is an interrupted write).

Every process takes part in gathering (under FSDP each holds a slice of every weight: gathering is a collective)
and in restoring: each first checks the files' names and shapes against its model (file headers only), so a
damaged or mismatched checkpoint stops every process with the same one-line error instead of leaving the others
waiting in a collective; then the main process reads the tensors and they are broadcast and sliced. Only the main
process writes. No pickle: safetensors for tensors, JSON for the rest (accelerate's ``save_state`` would pickle the
optimizer).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..atomic import atomic_dir
from ..config_types import is_integer
from ..errors import OptionError
from .composer import read_config
from .sharding import full_tensor, like

OPTIMIZER_FORMAT = "splitmerge.optimizer"


def _options(**fields):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(**fields)


def _bare(optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)


def _gathered(main: bool, values: dict) -> dict:
    return values if main else {}


# ---------------------------------------------------------------------------------------------- gather (all ranks)


def gather_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What training changes (trainable weights and buffers: a LoRA's frozen base is left out), whole and on the
    CPU, by Composer parameter name, in the main process; {} in the others. Every process must call it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(full_state_dict=True, cpu_offload=True,
                                                        ignore_frozen_params=True))


def gather_optimizer(model: torch.nn.Module, optimizer) -> dict:
    """The optimizer's whole state keyed by parameter name (``{"state": {name: {slot: value}}, "param_groups":
    [{..., "params": [names]}]}``) in the main process; {} in the others. Every process must call it."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, _bare(optimizer), options=_options(full_state_dict=True,
                                                                               cpu_offload=True))


class Ema:
    """Exponential moving average of the trainable weights, with the usual warm-up: the decay after u updates is
    min(decay, (1 + u) / (10 + u)), so a short run's average is not dominated by its first, untrained weights
    (measured: EMA 0.999 without warm-up after 1500 steps sampled 4x worse than the raw weights).

    Made from the model as `accelerator.prepare` left it: each average is laid out like its weight (on its GPU; a
    slice of it under FSDP), keyed by the weight's name. An average that is somewhere else (a model moved after
    the average was made) follows its weight at the next update."""

    def __init__(self, model: torch.nn.Module, decay: float, updates: int = 0):
        self.decay, self.updates = decay, updates
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, p in model.named_parameters():
            if name in self.shadow:
                if self.shadow[name].device != p.device:
                    self.shadow[name] = self.shadow[name].to(p.device)
                self.shadow[name].mul_(decay).add_(p.detach(), alpha=1 - decay)
        self.updates += 1

    def gather(self, main: bool) -> dict[str, torch.Tensor]:
        """The whole averages on the CPU in the main process ({} elsewhere). Every process must call it."""
        whole = {}
        for name, value in self.shadow.items():
            gathered = full_tensor(value)
            if main:
                whole[name] = gathered.detach().cpu().contiguous()
        return whole

    def load(self, path: Path) -> None:
        """Averages read from `path` (whole tensors; each process keeps its slice), names and shapes checked."""
        from safetensors import safe_open

        _check_names(path, {name: tuple(value.shape) for name, value in self.shadow.items()},
                     _checked(path, lambda: _file_shapes(path)))
        with safe_open(str(path), "pt") as opened:
            for name in list(self.shadow):
                self.shadow[name] = like(_checked(path, lambda n=name: opened.get_tensor(n)), self.shadow[name])


# ------------------------------------------------------------------------------------------------ write (main)


def write_checkpoint(run: Path, step: int, core, weights: dict, optimizer_state: dict,
                     averages: dict | None) -> Path:
    """``RUN/checkpoints/step-NNNNNN/`` from what was gathered (main process only), atomically."""
    from safetensors.torch import save_file

    with atomic_dir(run / "checkpoints" / f"step-{step:06d}") as folder:
        core.save_pretrained(folder / "composer", weights)
        _write_optimizer(folder, optimizer_state)
        if averages is not None:
            save_file(averages, str(folder / "ema.safetensors"))
        (folder / "state.json").write_text(json.dumps({"step": step}) + "\n")
    return run / "checkpoints" / f"step-{step:06d}"


def _write_optimizer(folder: Path, state: dict) -> None:
    from safetensors.torch import save_file

    tensors, scalars = {}, {}
    for name, slots in state["state"].items():
        for slot, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{name}/{slot}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{name}/{slot}"] = value
    save_file(tensors, str(folder / "optimizer.safetensors"))
    (folder / "optimizer.json").write_text(json.dumps({"format": OPTIMIZER_FORMAT, "version": 2,
                                                       "param_groups": state["param_groups"],
                                                       "scalars": scalars}))


def latest_checkpoint(run: Path) -> Path | None:
    found = sorted((run / "checkpoints").glob("step-*")) if (run / "checkpoints").is_dir() else []
    return found[-1] if found else None


def prune_checkpoints(run: Path, keep_last: int | None) -> list[Path]:
    """Remove all but the `keep_last` newest checkpoints of `run` (None: keep every one; a paper-scale checkpoint
    is tens of GB). Only complete ones count and go (a partial folder is an interrupted write). Returns the removed."""
    if keep_last is None:
        return []
    found = sorted((run / "checkpoints").glob("step-*"))
    complete = [path for path in found if (path / "state.json").is_file()]
    removed = complete[:-keep_last]
    for path in removed:
        shutil.rmtree(path)
    return removed


# ------------------------------------------------------------------------------------------ restore (all ranks)


def _checked(path: Path, read):
    """`read()`, with any way a damaged checkpoint file can fail turned into one line naming `path`."""
    from safetensors import SafetensorError

    try:
        return read()
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, RuntimeError,
            SafetensorError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise OptionError(f"{path}: a damaged checkpoint file ({first[:160]}); resume from an earlier "
                          "checkpoint by removing this one") from None


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as opened:
        return {key: tuple(opened.get_slice(key).get_shape()) for key in opened.keys()}


def _check_names(path: Path, wanted: dict[str, tuple], found: dict[str, tuple]) -> None:
    """The same names with the same shapes, else one line naming the first difference."""
    for name, shape in wanted.items():
        if name not in found:
            raise OptionError(f"{path}: a damaged checkpoint or one of another model: no {name}")
        if tuple(found[name]) != tuple(shape):
            raise OptionError(f"{path}: {name} is {list(found[name])} in the checkpoint, {list(shape)} in this "
                              "model (another model's checkpoint?)")
    extra = sorted(set(found) - set(wanted))
    if extra:
        raise OptionError(f"{path}: a checkpoint of another model: {extra[0]} is not one of its weights")


def _checkpoint_step(checkpoint: Path) -> int:
    path = checkpoint / "state.json"
    state = _checked(path, lambda: json.loads(path.read_text()))
    step = state.get("step") if isinstance(state, dict) else None
    if not is_integer(step) or step < 0:
        raise OptionError(f"{path}: a damaged checkpoint file (no step count)")
    return step


def restore(checkpoint: Path, model: torch.nn.Module, optimizer, core, main: bool) -> int:
    """Load a checkpoint's weights and optimizer state into the prepared `model` (one process, DDP or FSDP;
    `core` the unwrapped Composer) and `optimizer`; returns its step. Every process must call it."""
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict, set_model_state_dict,
                                                         set_optimizer_state_dict)

    from .composer_files import file_of, saved_weights

    step = _checkpoint_step(checkpoint)
    folder = checkpoint / "composer"
    saved = read_config(folder)   # the portable Composer's own record must be whole too
    if saved.backbone != core.config.backbone or saved.output != core.config.output:
        raise OptionError(f"{folder}: a {saved.backbone} Composer with {saved.output} output; this run trains a "
                          f"{core.config.backbone} one with {core.config.output} output")
    saved_as = file_of(core)   # (a LoRA's frozen base, buffers included, comes from the base, not the checkpoint)
    wanted = {name: tuple(value.shape) for name, value in
              get_model_state_dict(model, options=_options(ignore_frozen_params=True)).items()
              if saved_as(name) is not None}
    _check_names(folder, wanted, _checked(folder, lambda: saved_weights(core, folder, shapes_only=True)))
    record = _checked(checkpoint / "optimizer.json", lambda: json.loads((checkpoint / "optimizer.json").read_text()))
    if not isinstance(record, dict) or record.get("format") != OPTIMIZER_FORMAT:
        raise OptionError(f"{checkpoint / 'optimizer.json'}: an optimizer state this version cannot read (written "
                          "before checkpoints were keyed by name); start a new run or use an older splitmerge")
    _check_optimizer(checkpoint, record, wanted)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    weights = _read_on_main(main, distributed, folder, lambda: saved_weights(core, folder))
    options = _options(full_state_dict=True, broadcast_from_rank0=distributed, strict=False)
    set_model_state_dict(model, weights, options=options)
    state = _read_on_main(main, distributed, checkpoint / "optimizer.safetensors",
                          lambda: _read_optimizer(checkpoint, record))
    set_optimizer_state_dict(model, _bare(optimizer), state, options=options)
    return step


def _read_on_main(main: bool, distributed: bool, path: Path, read):
    """`read()` in the main process ({} elsewhere), and its failure raised in every process alike (the others
    would otherwise wait for the main one in the broadcast that follows)."""
    value, error = {}, None
    if main:
        try:
            value = _checked(path, read)
        except OptionError as failure:
            error = str(failure)
    if distributed:
        told = [error]
        torch.distributed.broadcast_object_list(told, src=0)
        error = told[0]
    if error:
        raise OptionError(error)
    return value


def _check_optimizer(checkpoint: Path, record: dict, wanted: dict) -> None:
    path = checkpoint / "optimizer.safetensors"
    groups = record.get("param_groups")
    named = {name for group in groups or [] if isinstance(group, dict) for name in group.get("params", [])}
    if not isinstance(groups, list) or not named <= set(wanted):
        raise OptionError(f"{checkpoint / 'optimizer.json'}: param groups that are not this model's")
    scalars = record.get("scalars")
    if not isinstance(scalars, dict) or any("/" not in key or key.rsplit("/", 1)[0] not in named for key in scalars):
        raise OptionError(f"{checkpoint / 'optimizer.json'}: optimizer values that are not this model's")
    for key, shape in _checked(path, lambda: _file_shapes(path)).items():
        name = key.rsplit("/", 1)[0]
        if "/" not in key or name not in named or (shape and shape != wanted[name]):
            raise OptionError(f"{path}: {key} does not fit this model's weights")


def _read_optimizer(checkpoint: Path, record: dict) -> dict:
    from safetensors.torch import load_file

    state: dict[str, dict] = {}
    for key, value in list(load_file(str(checkpoint / "optimizer.safetensors")).items()) + list(
            record["scalars"].items()):
        name, slot = key.rsplit("/", 1)
        state.setdefault(name, {})[slot] = value
    return {"state": state, "param_groups": record["param_groups"]}
