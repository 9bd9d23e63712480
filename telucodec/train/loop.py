"""The training job, top to bottom: config, data, model, optimizer, loop, validation, checkpoint.

One process by default; under `torchrun` every process trains on its own crops (DDP) and rank 0
alone writes files. Work is never lost: checkpoints are atomic, `--resume` continues from the
last one (also mid-epoch, after `--max_minutes`; on the run's own data, process count and batch
size unless `--accept_changed_data`: train/resume.py), an existing experiment is never replaced
without `--overwrite`, and NaN/Inf stops the run at once with the last good checkpoint intact.

It reads best whole (a little over 400 lines): one class whose methods run in the order of a
training run, so set-up, step, loop and checkpoint can be followed down the page; what is not
that order lives beside it (objective, resume, monitor, notes, media, checkpoint).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist

from telucodec.config import CodecConfig
from telucodec.errors import TelucodecError
from telucodec.formats.codes import widths_text
from telucodec.model.codec import Codec, load_matching_state, match_state
from telucodec.model.loading import base_config, checkpoint_config, init_config, load_checkpoint, read_weights
from telucodec.model.spectral import start_new_blocks_as_identity
from telucodec.model.training_state import training_state
from telucodec.train import media, monitor, notes, objective, resume
from telucodec.train.checkpoint import CHECKPOINT_FORMAT, atomic_torch_save, disk_full
from telucodec.train.crops import RankBatches, crop_batches
from telucodec.train.data import (
    bad_clip_state,
    prepare_training_data,
    report_found,
    restore_bad_clips,
    start_skipped_list,
    training_crops,
)
from telucodec.train.discriminators import Discriminators
from telucodec.train.experiment import (
    pick_device,
    prepare_experiment,
    setup_distributed,
    tidy_for_resume,
    undo_failed_start,
    wrap_ddp,
)
from telucodec.train.optim import freeze_parts, lr_factor, make_optimizer

QUIET_LOG_EVERY = 100  # with --quiet (no progress bar), one progress line per this many steps


class TrainingHalted(TelucodecError):
    """Training stopped by a health check (NaN/Inf); the last good checkpoint is intact."""


# ---- the loop --------------------------------------------------------------------------------

class Trainer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rank, self.world = setup_distributed(args.device)
        self.is_main = self.rank == 0
        self.device = pick_device(args.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        self.root = Path(args.checkpoint_dir) / args.experiment_name
        self.resume_from = prepare_experiment(self.root, args.resume, args.overwrite, self.rank)
        self._barrier()
        self.state = load_checkpoint(self.resume_from) if self.resume_from else None
        self.config = self._build_config()
        done = int(self.state["epoch"]) if self.state is not None else 0
        if self.state is not None and done >= self.config.train.num_epochs:
            raise TelucodecError(f"{self.root}: already complete at epoch {done} (--num_epochs "
                                 f"{self.config.train.num_epochs}); raise --num_epochs to train further: "
                                 f"{notes.resume_command(args, done + max(1, done // 2))}")
        if self.state is not None:  # refused before anything of the experiment is touched
            resume.check_processes(self.state, self.world, self.config.train.batch_size,
                                   getattr(args, "accept_changed_data", False), self.log)

    def log(self, msg: str) -> None:
        if self.is_main:
            print(msg, flush=True)

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _build_config(self) -> CodecConfig:
        a = self.args
        if self.state is not None:  # flags that would change the run are refused by name (train/resume.py)
            saved = checkpoint_config(self.state, str(self.resume_from))
            return resume.resumed_config(saved, a, int(self.state["step"]), self.log)
        cfg = resume.config_with_flags(base_config(a.config, a.init_from), resume.given_flags(a))
        if cfg.train.precision == "bf16" and self.device.type != "cuda":
            self.log("note: bf16 on the CPU runs under CPU autocast: the code path CUDA runs, usually slower than fp32")
        return cfg

    # -- set-up ----------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, tc = self.config, self.config.train
        torch.manual_seed(tc.seed)  # the same on every rank: the generator and discriminators start alike
        self.data = prepare_training_data(self.args.data_dir, cfg, self.is_main, self.log)
        if self.state is not None:
            resume.check_data(self.state, self.data.identity, getattr(self.args, "accept_changed_data", False),
                              self.log)
        if self.is_main:  # the experiment's folder is written from here on (a refused start left it as it was)
            if self.state is not None:
                tidy_for_resume(self.root, int(self.state["epoch"]))
            for sub in ("checkpoints", "samples", "tensorboard"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self.config.save(self.root / "config.json")
            start_skipped_list(self.data, self.root / "skipped.tsv", self.state is not None)
        self._barrier()
        train_seconds = self.data.train_seconds()
        self.steps_per_epoch = tc.steps_per_epoch or max(
            1, int(train_seconds * tc.crops_per_second / tc.segment_seconds / (tc.batch_size * self.world)))
        self.dataset = training_crops(self.data, cfg, self.steps_per_epoch * tc.batch_size * self.world)
        position = resume.epoch_position(self.state, self.steps_per_epoch, self.log) if self.state is not None else 0
        self.model = Codec(cfg).to(self.device)
        self.frozen = freeze_parts(self.model, tc.freeze)
        self.discs = (Discriminators(tc.disc_periods, tc.disc_stft_sizes, tc.disc_channels).to(self.device)
                      if tc.adversarial_after >= 0 else None)
        self.opt = make_optimizer([p for p in self.model.parameters() if p.requires_grad], tc.learning_rate, tc)
        self.opt_d = make_optimizer(self.discs.parameters(), tc.disc_learning_rate, tc) if self.discs else None
        torch.manual_seed(tc.seed + self.rank)  # from here each rank draws its own (dropout masks, k-means)
        self.balancer = objective.make_balancer(cfg)
        self.total_steps = resume.schedule_steps(self.state, self.steps_per_epoch, cfg, self.log, position)
        self.step, self.epoch, self.step_in_epoch = 0, 0, 0
        self.best_val = math.inf
        self.dropout_gen = torch.Generator().manual_seed(tc.seed)  # same on every rank: same n_q
        self.epoch_sums = monitor.EpochSums()  # the epoch in progress (carried over a mid-epoch resume)
        if self.state is not None:
            self._restore(self.state)
            self.step_in_epoch = position
        elif self.args.init_from:
            self._init_from(self.args.init_from)
        self.teacher = None
        if tc.target == "teacher":  # the model as it starts, frozen: its unquantized decode is the target
            self.teacher = objective.frozen_teacher(self.model, self.state.get("teacher") if self.state else None)
        self.ddp = wrap_ddp(self.model, self.device, self.world, objective.parameters_may_go_unused(cfg))
        self.ddp_discs = wrap_ddp(self.discs, self.device, self.world, False)
        self.monitor = monitor.HealthMonitor()
        self.table = monitor.EpochTable()
        self.writer = None
        if self.is_main:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.root / "tensorboard"))
        self._print_summary(train_seconds)

    def _init_from(self, source: str) -> None:
        state = read_weights(source)
        match = match_state(self.model, state)
        fresh = load_matching_state(self.model, state, strict=False, source=source)
        try:
            source_architecture = init_config(source).architecture()
        except TelucodecError:  # e.g. a bare .safetensors without its config.json
            source_architecture = None
        self.log(notes.init_from_report(source, match, len(self.model.state_dict()), source_architecture,
                                        self.config.architecture()))
        adopted = self.model.quantizer.adopt_plain_codebooks(state)
        if adopted:
            self.log(f"  factorized codebooks start from the plain ones' principal directions: stages {adopted}")
        zeroed = start_new_blocks_as_identity(self.model, fresh)
        if zeroed:
            self.log(f"  new blocks start as identity (layer scale 0): {', '.join(zeroed)}")

    def _restore(self, s: dict) -> None:
        load_matching_state(self.model, {**s["model"], **s.get("training_state", {})}, strict=True,
                            source=str(self.resume_from))
        self.opt.load_state_dict(s["optimizer"])
        if self.discs is not None and "discriminators" in s:
            self.discs.load_state_dict(s["discriminators"])
            self.opt_d.load_state_dict(s["optimizer_d"])
        if self.balancer is not None and s.get("balancer"):
            self.balancer.load_state_dict(s["balancer"])
        self.step, self.epoch, self.step_in_epoch = s["step"], s["epoch"], s["step_in_epoch"]
        self.best_val = s["best_val"]
        self.dropout_gen.set_state(s["rng_dropout"])  # the same on every rank
        restore_bad_clips(self.data, self.dataset, s.get("bad_clips"), self.is_main)
        if self.step_in_epoch:
            self.epoch_sums = monitor.EpochSums.from_state(s.get("epoch_sums"))
            if "epoch_sums" not in s:
                self.log(f"resume: the checkpoint (from an older telucodec) holds no sums of epoch {self.epoch + 1}'s "
                         f"first {self.step_in_epoch} steps: its train loss, grad and time columns cover the steps "
                         "after this resume only")
        self.log(f"resumed {self.resume_from} at epoch {self.epoch + 1}, step {self.step}")
        for note in resume.restore_rng_states(s, self.rank, self.world, self.device, self.config.train.seed):
            self.log(note)

    def _print_summary(self, train_seconds: float) -> None:
        cfg, m = self.config, self.model
        params = sum(p.numel() for p in m.parameters())
        kbps = m.nominal_kbps()
        stages = (f"{m.kbps_per_codebook():g} kbps per codebook x {m.max_n_q}" if len(set(m.stage_bits)) == 1
                  else f"{m.max_n_q} codebooks of {widths_text(m.stage_bits)} bits")
        self.log(f"telucodec train: {self.root}  preset {cfg.name}  device {self.device}"
                 + (f"  DDP x{self.world}" if self.world > 1 else ""))
        self.log(f"model: {params / 1e6:.2f} M parameters ({cfg.model.decoder} decoder, amplitude {cfg.model.amplitude}); "
                 f"{m.frame_rate} frames/s; {stages} = {kbps:g} kbps")
        if self.frozen:
            self.log(f"frozen: {', '.join(cfg.train.freeze)} ({self.frozen / 1e6:.2f} M parameters, not trained); "
                     f"serves {m.kbps_per_codebook():g} to {kbps:g} kbps, one codebook at a time")
        self.log(f"data: {notes.plural(len(self.data.train), 'train clip')} ({train_seconds / 60:.1f} min), "
                 f"{notes.plural(self.data.held_out, 'validation clip')}, {len(self.data.skipped)} skipped; "
                 f"{notes.plural(self.steps_per_epoch, 'step')}/epoch x {notes.plural(cfg.train.num_epochs, 'epoch')}, "
                 f"batch {cfg.train.batch_size}")
        if self.is_main:
            summary = {"parameters": params, "kbps": kbps, "train_clips": len(self.data.train),
                       "train_seconds": train_seconds, "val_clips": self.data.held_out,
                       "val_speakers": self.data.val_speakers,
                       "skipped": len(self.data.skipped), "steps_per_epoch": self.steps_per_epoch,
                       "world_size": self.world, "device": str(self.device)}
            (self.root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        advice = monitor.learning_rate_advice(cfg.train.learning_rate, cfg.train.optimizer)
        self.start_warnings = [advice] if advice else []
        warmup = notes.warmup_notes(cfg.train, self.step, self.steps_per_epoch * cfg.train.num_epochs, self.args.max_steps)
        self.start_warnings += [w.removeprefix("WARNING: ") for w in warmup if w.startswith("WARNING: ")]
        for note in ([f"WARNING: {advice}"] if advice else []) + warmup + monitor.expectation_notes(kbps):
            self.log(note)

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, name: str, rng: dict | None = None, epoch_seconds: float = 0.0) -> None:
        """Rank 0 writes; every rank calls it unless `rng` came gathered (`resume.rng_states`), as
        at the end of an epoch, when every rank's finds are gathered already. Mid-epoch it keeps
        the epoch's sums so far (`epoch_seconds`: its time in this start)."""
        collective = rng is None
        rng = rng if rng is not None else resume.rng_states(self.device, self.world)
        bad_clips = bad_clip_state(self.data, self.dataset, self.world if collective else 1)
        if not self.is_main:
            return
        s = {
            "format": CHECKPOINT_FORMAT, "config": self.config.to_dict(),
            "model": self.model.state_dict(), "training_state": training_state(self.model),
            "optimizer": self.opt.state_dict(), "schedule_steps": self.total_steps,
            "step": self.step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "best_val": self.best_val, "rng_dropout": self.dropout_gen.get_state(), **rng,
            # what the run is, for --resume to recognise (train/resume.py), and its bad clips
            "data": self.data.identity, "world_size": self.world, "steps_per_epoch": self.steps_per_epoch,
            "bad_clips": bad_clips,
        }
        if self.step_in_epoch:
            s["epoch_sums"] = self.epoch_sums.state_dict(epoch_seconds)
        parts = {"discriminators": self.discs, "optimizer_d": self.opt_d, "balancer": self.balancer,
                 "teacher": self.teacher}
        s.update({key: part.state_dict() for key, part in parts.items() if part is not None})
        atomic_torch_save(s, self.root / "checkpoints" / f"{name}.pt")

    # -- one step --------------------------------------------------------------------------
    def train_step(self, batch: torch.Tensor) -> tuple[dict[str, float], float]:
        cfg, tc = self.config, self.config.train
        n_q = self.model.quantizer.sample_n_q(self.dropout_gen)
        adversarial = self.discs is not None and self.step >= tc.adversarial_after
        # a trained generator fine-tuned against fresh critics would first get their noise as
        # gradients: for disc_warmup_steps only the critics learn (the generator sees no adversarial term)
        generator_adversarial = adversarial and self.step >= tc.adversarial_after + tc.disc_warmup_steps
        with objective.autocast(self.device, tc.precision):  # bf16: CUDA, or the CPU (the same code path)
            out = self.ddp(batch, n_q, quantize=self.step >= tc.quantizer_warmup_steps)
            target = batch if self.teacher is None else objective.teacher_target(self.teacher, batch)
            terms = objective.reconstruction_losses(out, target, cfg)
            if generator_adversarial:  # the plain module: its gradients here are discarded, not all-reduced
                terms.update(objective.adversarial_terms(self.discs, out.wav, batch, cfg))
            total = objective.weighted_total(terms, cfg)
        values = torch.stack([v.detach().float() for v in (*terms.values(), total)]).tolist()  # one device-to-host copy
        logged = dict(zip([*terms, "total"], values))
        if not math.isfinite(logged["total"]):
            bad = [k for k, v in logged.items() if not math.isfinite(v) and k != "total"]
            raise TrainingHalted(f"step {self.step}: loss is {logged['total']} (non-finite terms: {', '.join(bad) or 'total'})")
        self.opt.zero_grad(set_to_none=True)
        objective.backward(terms, total, out.wav, cfg, self.balancer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip))
        if not math.isfinite(grad_norm):
            name = monitor.first_nonfinite_grad(self.model)
            raise TrainingHalted(f"step {self.step}: non-finite gradient in {name or 'a parameter'}")
        self.opt.step()
        if adversarial:
            with objective.autocast(self.device, tc.precision):
                d_loss = objective.discriminator_loss(self.ddp_discs, out.wav, batch, cfg)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.discs.parameters(), tc.grad_clip)
            self.opt_d.step()
            logged["discriminator"] = float(d_loss.detach())
        return logged, grad_norm

    # -- the loop --------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum
        self.log(f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint (again to abort)")
        signal.signal(signum, signal.SIG_DFL)

    def _stop_requested(self, deadline: float) -> str | None:
        """"signal" once SIGINT/SIGTERM arrived, "max_minutes" past the deadline, on any rank: all
        ranks must stop at the same step (a CPU tensor: gloo, also beside NCCL)."""
        flags = torch.tensor([float(self.stop_signal is not None), float(time.monotonic() > deadline)])
        if self.world > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return "signal" if flags[0] > 0 else "max_minutes" if flags[1] > 0 else None

    def run(self) -> int:
        tc = self.config.train
        start = time.monotonic()
        self.stop_signal = None
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or a preempted machine: save, then stop
                signal.signal(sig, self._on_signal)
        deadline = start + self.args.max_minutes * 60 if self.args.max_minutes else math.inf
        stopped_early, self.stop_reason = False, None
        from tqdm import tqdm
        while self.epoch < tc.num_epochs:
            epoch_start = time.monotonic()
            self.dataset.set_epoch(self.epoch)
            batches = crop_batches(self.dataset, RankBatches(len(self.dataset), self.rank, self.world, tc.batch_size,
                                   self.steps_per_epoch, self.step_in_epoch), self.args.num_workers, self.data.found)
            sums = self.epoch_sums  # a resumed epoch's sums start from its checkpoint's
            first_step = self.step_in_epoch
            bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}/{tc.num_epochs}",
                       disable=not self.is_main or self.args.quiet, leave=False, dynamic_ncols=True)
            while self.step_in_epoch < self.steps_per_epoch:
                batch = next(batches).to(self.device)
                for group in self.opt.param_groups:
                    group["lr"] = tc.learning_rate * lr_factor(self.step, self.total_steps, tc)
                logged, grad_norm = self.train_step(batch)
                sums.add(logged, grad_norm)
                self.step += 1
                self.step_in_epoch += 1
                bar.update(1)
                bar.set_postfix(loss=f"{logged['total']:.3f}")
                if self.args.quiet and self.step_in_epoch % QUIET_LOG_EVERY == 0:
                    rate = (self.step_in_epoch - first_step) / max(time.monotonic() - epoch_start, 1e-9)
                    eta = (self.steps_per_epoch - self.step_in_epoch) / max(rate, 1e-9)
                    self.log(f"  epoch {self.epoch + 1} step {self.step_in_epoch}/{self.steps_per_epoch}  "
                             f"loss {sums.means()['total']:.4f}  {rate:.2f} steps/s  epoch ETA {eta / 60:.1f} min")
                if self.writer and self.step % 10 == 0:
                    for k, v in logged.items():
                        self.writer.add_scalar(f"loss/{k}", v, self.step)
                    self.writer.add_scalar("other/grad_norm", grad_norm, self.step)
                self.stop_reason = (self._stop_requested(deadline)
                                    or ("max_steps" if self.args.max_steps and self.step >= self.args.max_steps else None))
                if self.stop_reason:
                    stopped_early = True
                    break
            bar.close()
            if stopped_early and self.step_in_epoch < self.steps_per_epoch:
                self.save("last", epoch_seconds=time.monotonic() - epoch_start)
                break
            self.epoch_sums = monitor.EpochSums()  # the next epoch's
            self.end_epoch(sums.means(), sums.mean_grad_norm(), sums.seconds + time.monotonic() - epoch_start)
            if stopped_early:
                break
        self._finish()
        signal_name = signal.Signals(self.stop_signal).name if self.stop_signal else ""
        for line in notes.closing_summary(self.root, self.args, self.stop_reason or "num_epochs", self.epoch, self.step,
                                          tc.num_epochs, self.step_in_epoch > 0, signal_name,
                                          self.world) if self.is_main else ():
            self.log(line)
        return 128 + self.stop_signal if self.stop_signal else 0

    def end_epoch(self, mean_terms: dict[str, float], grad_norm: float, seconds: float) -> None:
        cfg, tc = self.config, self.config.train
        self.epoch += 1
        self.step_in_epoch = 0
        report_found(self.data, self.dataset, self.world, self.root / "skipped.tsv" if self.is_main else None, self.log)
        with_pesq = tc.pesq_every > 0 and (self.epoch % tc.pesq_every == 0 or self.epoch == tc.num_epochs)
        row = None
        rng = resume.rng_states(self.device, self.world)  # a collective, so before rank 0's work (which draws none)
        if self.is_main:
            v = monitor.validate(self.model, self.data.val[: tc.val_max_clips], self.device,
                                 lambda out, x: (objective.reconstruction_total(out, x, cfg),),
                                 tc.val_max_seconds, with_pesq, tc.pesq_clips)
            warnings = (self.start_warnings if self.epoch == 1 else []) + self.monitor.check(
                self.epoch, mean_terms.get("total", math.nan), v, cfg.model.amplitude,
                step=self.step, steps_per_epoch=self.steps_per_epoch)
            row = {
                "epoch": self.epoch, "step": self.step, "train_loss": mean_terms.get("total"), "val_loss": v.val_loss,
                "output_min": v.output_min, "output_max": v.output_max, "rms_ratio": v.rms_ratio,
                "rms_ratio_normalized": v.rms_ratio_normalized, "snr_db": v.snr_db, "si_sdr_db": v.si_sdr_db,
                "mel_distance": v.mel_distance, "clip_fraction": v.clip_fraction,
                "codebook_usage": v.codebook_usage, "codebook_perplexity": v.codebook_perplexity,
                "pesq_wb": v.pesq_wb, "stoi": v.stoi, "grad_norm": grad_norm,
                "lr": self.opt.param_groups[0]["lr"], "seconds": seconds, "warnings": warnings,
            }
            row.update({f"loss/{k}": val for k, val in mean_terms.items()})
            with open(self.root / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            self.log(self.table.format(row))
            warming = notes.warmup_status(tc, self.step, row["lr"])
            if warming:
                self.log(warming)
            for w in warnings[len(self.start_warnings) if self.epoch == 1 else 0:]:  # the start's were said before training
                self.log(f"WARNING: {w}")
            media.log_epoch(self.writer, row, v, self.step, self.epoch, tc.num_epochs, cfg.model.sample_rate)
            if media.samples_due(self.epoch, tc.num_epochs, tc.samples_every):
                media.write_samples(self.root / "samples" / f"epoch_{self.epoch:04d}", v, cfg.model.sample_rate)
            improved = v.val_loss < self.best_val
            if improved:
                self.best_val = v.val_loss
            self.save("last", rng)
            if improved:
                shutil.copyfile(self.root / "checkpoints" / "last.pt", self.root / "checkpoints" / ".best.tmp")
                os.replace(self.root / "checkpoints" / ".best.tmp", self.root / "checkpoints" / "best.pt")
                self.model.save_pretrained(self.root / "model")
        self._barrier()

    def _finish(self) -> None:
        if self.writer:
            self.writer.close()
        if self.world > 1:
            # every rank done with its last collective before any tears gloo down: a rank that
            # destroyed the group while another was still in the checkpoint's gather aborted
            # ("terminate called without an active exception") in a 2-process CI run
            dist.barrier()
            dist.destroy_process_group()


def _leave_without_teardown(code: int) -> None:
    """End a finished non-main DDP rank now. Its work is done (the ranks met at a barrier and the
    process group is destroyed, `Trainer._finish`), yet about one exit in six of a 2-process gloo
    run aborted in the interpreter's teardown ("terminate called without an active exception":
    a C++ thread of the distributed runtime still joinable), which torchrun reports as a failed
    run. Rank 0 writes every file and exits normally; the others have nothing left to write."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def train_from_args(args: argparse.Namespace) -> int:
    if args.overfit_check:
        from telucodec.train.overfit import overfit_check
        return overfit_check(args)
    # a start that fails before the first checkpoint (bad data, --init_from, NaN on step 1) leaves nothing behind
    with undo_failed_start(Path(args.checkpoint_dir) / args.experiment_name, args.resume, args.overwrite) as undo:
        trainer = Trainer(args)
        trainer.setup()
        last = trainer.root / "checkpoints" / "last.pt"
        previous_hook = threading.excepthook
        threading.excepthook = lambda a: None if disk_full(a.exc_value) else previous_hook(a)
        try:
            code = trainer.run()
            if trainer.world > 1 and not trainer.is_main:
                _leave_without_teardown(code)
            return code
        except TrainingHalted as exc:
            where = (f"; last good checkpoint: {last}" if last.exists() else
                     "; no checkpoint was written yet" + (f" ({trainer.root} removed)" if undo() else ""))
            print(f"telucodec train: stopped: {exc}{where}", file=sys.stderr)
            return 3
        except OSError as exc:
            if not disk_full(exc):
                raise
            # e.g. TensorBoard's writer thread (its own report is silenced above: this line says it)
            where = f"; last checkpoint intact: {last}" if last.exists() else ""
            raise TelucodecError(f"{trainer.root}: disk full while writing logs ({exc.strerror}){where}") from exc
        finally:
            threading.excepthook = previous_hook
