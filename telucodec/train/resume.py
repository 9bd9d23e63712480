"""What `--resume` keeps, applies and refuses, and the state a resumed run continues from.

A resumed run continues the run its checkpoint configured. Every flag given with `--resume` is
compared with the checkpoint's config. A change that is safe mid-run is applied and said
(`APPLIED`: the peak learning rate, the precision, when the discriminators switch on, the number
of epochs); any other change is refused by name, all of them in one line (the crops per step,
the data split, the seed, the warm-up, the architecture, the losses, `--init_from`), since the
resumed run could not honour it and would otherwise drop it silently.

The run's data and its crops per step are part of what it was: the checkpoint keeps the data's
fingerprint (`data.data_identity`: every file's name and length), the number of processes and
the steps per epoch, and a resume on other data, with another number of processes or another
`--batch_size` is refused in one line naming old and new (`check_processes`, `check_data`).
`--accept_changed_data` takes such a change: the start then says how long an epoch now is, where
the epoch in progress continues (the same share of its crops, `epoch_position`) and where the
run ends against the schedule.

The learning-rate schedule keeps the length the run was planned with (`schedule_steps`, kept in
the checkpoint): a longer `--num_epochs` (or shorter epochs) continues past its end at the
schedule's final rate (`learning_rate x min_lr_ratio` for cosine and exponential,
`learning_rate` for constant), where stretching the schedule to the new length would send a rate
already at its floor back up.

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
from telucodec.train.data import describe_identity
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
# ... and with --accept_changed_data: the crops per step (the epochs then take another number of steps)
ACCEPTED = {("train", "batch_size")}
ACCEPT_FLAG = "--accept_changed_data"


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
    applied = APPLIED | (ACCEPTED if getattr(args, "accept_changed_data", False) else set())
    refused = [f"--init_from {args.init_from} (the weights come from the checkpoint)"] if getattr(args, "init_from", None) else []
    acceptable = False
    for section in ("model", "quantizer", "loss", "train"):
        old, new = asdict(getattr(saved, section)), asdict(getattr(requested, section))
        for key in sorted(k for k in old if old[k] != new.get(k)):
            who = f"--{flag_of[(section, key)]}" if (section, key) in flag_of else f"--config {args.config}"
            if (section, key) not in applied:
                refused.append(f"{who} ({section}.{key} {old[key]!r} -> {new[key]!r})")
                acceptable = acceptable or (section, key) in ACCEPTED
            elif key != "num_epochs":  # its schedule note comes with the step counts (`schedule_steps`)
                log(f"resume: {who} sets {key} {new[key]!r} (was {old[key]!r}) from step {step} on"
                    + _consequence(key, old[key], new[key]))
    if refused:
        raise TelucodecError("--resume continues the run as its checkpoint configured it; refused: "
                             + "; ".join(refused) + ". Drop these flags, or start a new experiment "
                             "(--init_from its checkpoint to start from its weights)"
                             + (f"; the batch size may change with {ACCEPT_FLAG}" if acceptable else ""))
    return requested


def _processes(n: int) -> str:
    return f"{n} process" + ("" if n == 1 else "es")


def saved_processes(state: dict[str, Any]) -> int | None:
    """The number of processes that wrote `state` (a checkpoint from before it was kept: the
    ranks whose random state it holds; None when it holds rank 0's only)."""
    if state.get("world_size"):
        return int(state["world_size"])
    ranks = state.get("rng_cpu_ranks")
    return len(ranks) if ranks else None


def check_processes(state: dict[str, Any], world: int, batch_size: int, accept: bool,
                    log: Callable[[str], None]) -> None:
    """Refuse (or with `accept`, say) a resume with another number of processes than the run had:
    each step would take another number of crops, and the epochs another number of steps."""
    old = saved_processes(state)
    if old is None or old == world:
        return
    if not accept:
        raise TelucodecError(f"--resume: the run trained with {_processes(old)}, this start has {_processes(world)}: "
                             f"each step would take {world * batch_size} crops instead of {old * batch_size}. Start "
                             f"it with {_processes(old)} (torchrun --nproc_per_node {old}), or add {ACCEPT_FLAG} "
                             f"to continue with {world}")
    log(f"resume: {ACCEPT_FLAG}: {_processes(old)} -> {world}: each step takes {world * batch_size} crops "
        f"(was {old * batch_size})")


def check_data(state: dict[str, Any], identity: dict[str, Any], accept: bool, log: Callable[[str], None]) -> None:
    """Refuse (or with `accept`, say) a resume on other data than the run's, judged by the data's
    fingerprint (`data.data_identity`), not by the --data_dir text: the same files elsewhere are
    the run's data, a folder of that name holding other files is not."""
    old = state.get("data")
    if not old:
        log("resume: the checkpoint predates data fingerprints: --data_dir is taken to be the run's data unchecked")
        return
    if old.get("fingerprint") == identity["fingerprint"]:
        if old.get("dir") != identity["dir"]:
            log(f"resume: --data_dir {identity['dir']} holds the run's data (the same files and lengths as {old.get('dir')})")
        return
    if not accept:
        raise TelucodecError(f"--data_dir {identity['dir']}: not the data this run trained on (the run's: "
                             f"{describe_identity(old)}; now: {describe_identity(identity)}). Resume with the "
                             f"run's data, or add {ACCEPT_FLAG} to continue on this data")
    log(f"resume: {ACCEPT_FLAG}: the data changed ({describe_identity(old)} -> {describe_identity(identity)}): "
        "the crops from here on are drawn from the new data")


def epoch_position(state: dict[str, Any], steps_per_epoch: int, log: Callable[[str], None]) -> int:
    """Where the resumed epoch continues: its step in the checkpoint, or, when an epoch now takes
    another number of steps (an accepted change), the step at the same share of its crops."""
    done, epoch = int(state["step_in_epoch"]), int(state["epoch"])
    saved = int(state.get("steps_per_epoch") or steps_per_epoch)
    if saved == steps_per_epoch:
        return done
    position = done * steps_per_epoch // saved
    log(f"resume: an epoch is now {steps_per_epoch} steps (was {saved})"
        + (f": epoch {epoch + 1} continues at step {position} of {steps_per_epoch} (was {done} of {saved}), "
           "the same share of its crops" if done else ""))
    return position


def _field(cfg: CodecConfig, flag: str) -> Any:
    section, key = FLAG_FIELDS[flag]
    return getattr(getattr(cfg, section), key)


def _consequence(key: str, old: Any, new: Any) -> str:
    if key == "learning_rate":
        return " (the schedule keeps its shape)"
    if key == "batch_size":
        return f" ({ACCEPT_FLAG}): each process's steps take {new} crops"
    if key == "adversarial_after" and old >= 0 > new:
        return "; the discriminators are switched off and their state is not kept"
    if key == "adversarial_after" and new >= 0 > old:
        return "; the discriminators start fresh"
    return ""


def schedule_steps(state: dict[str, Any] | None, steps_per_epoch: int, cfg: CodecConfig,
                   log: Callable[[str], None], step_in_epoch: int | None = None) -> int:
    """The learning-rate schedule's length in steps: steps_per_epoch x num_epochs for a fresh
    run; a resumed run keeps the length it was planned with (the checkpoint's `schedule_steps`;
    a checkpoint from before it was kept: steps_per_epoch x the checkpoint's num_epochs). When the
    run now ends elsewhere (another --num_epochs, or epochs of another length), the start says at
    which step it ends and how that relates to the schedule. `step_in_epoch`: where the resumed
    epoch continues (`epoch_position`; default: the checkpoint's)."""
    tc = cfg.train
    if state is None:
        return steps_per_epoch * tc.num_epochs
    saved_epochs = int(state["config"]["train"]["num_epochs"])
    length = int(state.get("schedule_steps") or steps_per_epoch * saved_epochs)
    position = int(state["step_in_epoch"]) if step_in_epoch is None else step_in_epoch
    end = int(state["step"]) + steps_per_epoch * (tc.num_epochs - int(state["epoch"])) - position
    causes = [f"--num_epochs {tc.num_epochs}"] if tc.num_epochs != saved_epochs else []
    saved_steps = int(state.get("steps_per_epoch") or steps_per_epoch)
    if steps_per_epoch != saved_steps:
        causes.append(f"epochs of {steps_per_epoch} steps (was {saved_steps})")
    cause = " with ".join(causes) or f"--num_epochs {tc.num_epochs}"
    runs, stops = ("runs", "stops") if cause.startswith("--") else ("run", "stop")  # "--num_epochs 3 runs", "epochs ... run"
    if end > length:
        floor = tc.learning_rate * decay_factor(1.0, tc)
        log(f"resume: {cause} {runs} {end - length} steps past the {length}-step schedule the run was planned with "
            f"(it ends at step {end}): the learning rate stays at its end value, {floor:.1e}, for them (the "
            "schedule's length is kept in the checkpoint; a new schedule is a new experiment with --init_from)")
    elif end < length:
        log(f"resume: {cause} {stops} {length - end} steps before the {length}-step schedule ends (it ends at "
            f"step {end}): the learning rate will not reach its end value")
    elif causes:
        log(f"resume: {cause}: the run ends at step {end}, where its {length}-step schedule ends")
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
