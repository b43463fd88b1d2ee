"""Fully sharded training (FSDP2): what the training loop needs to know about a sharded Composer.

On GPUs accelerate shards the Composer (`accelerate launch --config_file launch/fsdp-*.yaml`, docs/training.md):
each transformer block and then the root get `torch.distributed.fsdp.fully_shard`, so a parameter is a
`DTensor` of which each process holds one slice (dim 0). Parameter names do not change (FSDP2 keeps them), so
checkpoints, the EMA and the optimizer state are keyed the same sharded or not.

accelerate has no FSDP on CPUs; ``SPLITMERGE_CPU_FSDP=1`` under ``torchrun`` shards the Composer here the way
accelerate's ``transformer_based_wrap`` does (`shard_on_cpu`), so the sharded code paths (gathering, restoring,
sampling a sharded model) run in the tests and in ``benchmarks/gpu_smoke.sh --cpu``.
"""

from __future__ import annotations

import contextlib
import os

import torch

from ..errors import OptionError

CPU_FSDP_VARIABLE = "SPLITMERGE_CPU_FSDP"


def cpu_fsdp_requested() -> bool:
    return os.environ.get(CPU_FSDP_VARIABLE, "") not in ("", "0")


def check_sharding(accelerator) -> None:
    """Refuse FSDP version 1 (its flat parameters rename and merge the weights the EMA and checkpoints are keyed
    by) and the CPU sharding switch outside torchrun (whose environment makes the process group)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP and not accelerator.is_fsdp2:
        raise OptionError("train: FSDP version 1 is not supported; set fsdp_version: 2 in the accelerate config "
                          "(launch/fsdp-*.yaml, docs/training.md)")
    if cpu_fsdp_requested() and "RANK" not in os.environ:
        raise OptionError(f"train: {CPU_FSDP_VARIABLE}=1 shards across torchrun's processes: launch with "
                          "torchrun --nproc_per_node N (1 or more)")


def block_classes(module: torch.nn.Module) -> set[str]:
    """The transformer block classes among those diffusers marks as not to be split (`_no_split_modules`):
    the units `fully_shard` wraps one by one, as the launch configs' transformer_based_wrap does
    (``CogVideoXBlock``, ``WanTransformerBlock``)."""
    names = set()
    for part in module.modules():
        names.update(name for name in getattr(part, "_no_split_modules", None) or () if name.endswith("Block"))
    return names


def shard_on_cpu(model: torch.nn.Module) -> torch.nn.Module:
    """`model` sharded in place across the gloo group on the CPU: each block (`block_classes`), then the root."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if not dist.is_initialized():   # one process: accelerate makes no group, FSDP2 needs one
        dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    wrapped = block_classes(model)
    for part in list(model.modules()):
        if part is not model and type(part).__name__ in wrapped:
            fully_shard(part, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def unsharded(model: torch.nn.Module):
    """The root's own parameters gathered while the block holds (sampling calls the transformer, not the root's
    forward, so the root's hooks never gather them; the blocks gather theirs as they run). Nothing for an
    unsharded model. Every process must enter it."""
    if not is_sharded(model):
        yield model
        return
    model.unshard()
    try:
        yield model
    finally:
        model.reshard()


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded tensor's whole value (a collective: every process must call it), else the tensor itself."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A whole `value` laid out like `target`: this process's slice when `target` is sharded (each process holds
    `value`, so no communication), else `value` on `target`'s device and in its dtype."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(target, DTensor):
        return distribute_tensor(value.to(target.device, target.dtype), target.device_mesh, target.placements,
                                 src_data_rank=None)
    return value.to(target.device, target.dtype)


def weight_checksum(model: torch.nn.Module) -> float:
    """One number every difference in the weights changes, the same on every process of a run (a sharded weight
    is gathered first): under DDP the processes' numbers must agree, under FSDP they agree by construction."""
    total = torch.zeros((), dtype=torch.float64)
    for parameter in model.parameters():
        total += full_tensor(parameter.detach()).double().sum().cpu()
    return float(total)
