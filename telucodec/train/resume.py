"""What `--resume` keeps, applies and refuses, and the state a resumed run continues from.

A resumed run continues the run its checkpoint configured. Every flag given with `--resume` is
compared with the checkpoint's config. A change that is safe mid-run is applied and said
(`APPLIED`: the peak learning rate, the precision, when the discriminators switch on, the number
of epochs); any other change is refused by name, all of them in one line (the crops per step,
the data split, the seed, the warm-up, the architecture, the losses, `--init_from`), since the
resumed run could not honour it and would otherwise drop it silently.

The learning-rate schedule keeps the length the run was planned with (`schedule_steps`, kept in
the checkpoint): a longer `--num_epochs` continues past its end at the schedule's final rate
(`learning_rate x min_lr_ratio` for cosine and exponential, `learning_rate` for constant), where
stretching the schedule to the new length would send a rate already at its floor back up.

Random state is saved and restored per rank: each process has its own generators (its own
quantizer dropout masks and k-means draws), and each gets its own back.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import torch
import torch.distributed as dist

from telucodec.config import CodecConfig, get_config
from telucodec.errors import TelucodecError
from telucodec.train.optim import decay_factor

# flag -> the config field it sets
FLAG_FIELDS: dict[str, tuple[str, str]] = {
    "batch_size": ("train", "batch_size"), "learning_rate": ("train", "learning_rate"),
    "num_epochs": ("train", "num_epochs"), "adversarial_after": ("train", "adversarial_after"),
    "precision": ("train", "precision"), "seed": ("train", "seed"), "warmup_steps": ("train", "warmup_steps"),
    "steps_per_epoch": ("train", "steps_per_epoch"), "val_speakers": ("train", "val_speakers"),
    "amplitude": ("model", "amplitude"),
}
# fields a resumed run may change: they change no tensor shape, no crop and no data split
APPLIED = {("train", "learning_rate"), ("train", "precision"), ("train", "adversarial_after"), ("train", "num_epochs")}


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The config flags the user gave, as config values (val_speakers as a tuple)."""
    values = {flag: getattr(args, flag, None) for flag in FLAG_FIELDS}
    if values["val_speakers"]:
        values["val_speakers"] = tuple(values["val_speakers"].split(","))
    return {flag: value for flag, value in values.items() if value not in (None, "")}


def config_with_flags(cfg: CodecConfig, flags: dict[str, Any]) -> CodecConfig:
    """`cfg` with each given flag's field set (`given_flags`)."""
    for flag, value in flags.items():
        section, key = FLAG_FIELDS[flag]
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{key: value})})
    return cfg


def resumed_config(saved: CodecConfig, args: argparse.Namespace, step: int, log: Callable[[str], None]) -> CodecConfig:
    """The config a resumed run trains with: the checkpoint's (`saved`), with the changes in
    `APPLIED` applied and said, or a TelucodecError naming every other change and its flag."""
    flags = given_flags(args)
    requested = saved
    if args.config:  # the preset or file, with the checkpoint's values where a flag could have set them
        base = config_with_flags(get_config(args.config), {f: _field(saved, f) for f in FLAG_FIELDS})
        requested = replace(base, name=saved.name)
    requested = config_with_flags(requested, flags)
    flag_of = {FLAG_FIELDS[f]: f for f in flags}
    refused = [f"--init_from {args.init_from} (the weights come from the checkpoint)"] if getattr(args, "init_from", None) else []
    for section in ("model", "quantizer", "loss", "train"):
        old, new = asdict(getattr(saved, section)), asdict(getattr(requested, section))
        for key in sorted(k for k in old if old[k] != new.get(k)):
            who = f"--{flag_of[(section, key)]}" if (section, key) in flag_of else f"--config {args.config}"
            if (section, key) not in APPLIED:
                refused.append(f"{who} ({section}.{key} {old[key]!r} -> {new[key]!r})")
            elif key != "num_epochs":  # its schedule note comes with the step counts (`schedule_steps`)
                log(f"resume: {who} sets {key} {new[key]!r} (was {old[key]!r}) from step {step} on"
                    + _consequence(key, old[key], new[key]))
    if refused:
        raise TelucodecError("--resume continues the run as its checkpoint configured it; refused: "
                             + "; ".join(refused) + ". Drop these flags, or start a new experiment "
                             "(--init_from its checkpoint to start from its weights)")
    return requested


def _field(cfg: CodecConfig, flag: str) -> Any:
    section, key = FLAG_FIELDS[flag]
    return getattr(getattr(cfg, section), key)


def _consequence(key: str, old: Any, new: Any) -> str:
    if key == "learning_rate":
        return " (the schedule keeps its shape)"
    if key == "adversarial_after" and old >= 0 > new:
        return "; the discriminators are switched off and their state is not kept"
    if key == "adversarial_after" and new >= 0 > old:
        return "; the discriminators start fresh"
    return ""


def schedule_steps(state: dict[str, Any] | None, steps_per_epoch: int, cfg: CodecConfig,
                   log: Callable[[str], None]) -> int:
    """The learning-rate schedule's length in steps: steps_per_epoch x num_epochs for a fresh
    run; a resumed run keeps the length it was planned with (the checkpoint's `schedule_steps`;
    a checkpoint from before it was kept: steps_per_epoch x the checkpoint's num_epochs), and a
    different --num_epochs is told how it relates."""
    tc = cfg.train
    planned = steps_per_epoch * tc.num_epochs
    if state is None:
        return planned
    length = int(state.get("schedule_steps") or steps_per_epoch * int(state["config"]["train"]["num_epochs"]))
    if planned > length:
        end = tc.learning_rate * decay_factor(1.0, tc)
        log(f"resume: --num_epochs {tc.num_epochs} runs {planned - length} steps past the {length}-step schedule the "
            f"run was planned with: the learning rate stays at its end value, {end:.1e}, for them (the schedule's "
            "length is kept in the checkpoint; a new schedule is a new experiment with --init_from)")
    elif planned < length:
        log(f"resume: --num_epochs {tc.num_epochs} stops {length - planned} steps before the {length}-step schedule "
            "ends: the learning rate will not reach its end value")
    return length


def rng_states(device: torch.device, world: int) -> dict[str, Any]:
    """Every rank's random state, for rank 0 to save: under DDP a collective (every rank calls
    it; CPU tensors, gathered over gloo)."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    cpus, cudas = [cpu], [cuda]
    if world > 1:
        cpus = [torch.empty_like(cpu) for _ in range(world)]
        dist.all_gather(cpus, cpu)
        if cuda is not None:
            cudas = [torch.empty_like(cuda) for _ in range(world)]
            dist.all_gather(cudas, cuda)
    return {"rng_cpu": cpus[0], "rng_cuda": cudas[0], "rng_cpu_ranks": cpus,
            "rng_cuda_ranks": cudas if cuda is not None else None}


def restore_rng_states(state: dict[str, Any], rank: int, world: int, device: torch.device, seed: int) -> list[str]:
    """This rank's random state from a checkpoint, and a note when some rank has none there (a
    checkpoint written before they were kept per rank holds rank 0's only; or there are more
    processes now than then): such a rank restarts from seed + rank."""
    cpus = state.get("rng_cpu_ranks") or [state["rng_cpu"]]
    cudas = state.get("rng_cuda_ranks") or [state.get("rng_cuda")]
    if rank >= len(cpus):
        torch.manual_seed(seed + rank)
    else:
        torch.set_rng_state(cpus[rank])
        if device.type == "cuda" and rank < len(cudas) and cudas[rank] is not None:
            torch.cuda.set_rng_state(cudas[rank], device)
    return [] if world <= len(cpus) else [f"resume: the checkpoint holds the random state of {len(cpus)} process(es): "
                                          f"ranks {len(cpus)}..{world - 1} restart theirs from seed + rank"]
