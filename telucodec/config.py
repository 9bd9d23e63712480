"""Configuration dataclasses, named presets and their JSON round trip.

A config is saved inside every checkpoint and model folder, so a model can always be rebuilt
from its own files. A preset is a named instance of `CodecConfig`, never a fork of the code.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from telucodec.errors import TelucodecError

CONFIG_VERSION = 1

# Architecture fields added after models were shipped, with the value that reproduces the older
# models: left out of `architecture()` at that value, so the model ids (and bitstreams) of models
# made before the field existed stay valid.
ADDED_LATER = {"spectral_upsample": 1, "spectral_fine_layers": 2, "spectral_fine_hidden": 128,
               "spectral_fine_mode": "replace", "encoder": "seanet", "encoder_hidden": 256,
               "encoder_layers": 4, "encoder_n_fft": 640, "spectral_fine_gain": 0.01}

# The names every name field accepts: a config is checked when it is read (`check_names`), so a
# typo is a one-line error, never a silent default. The model families' names live here because
# this layer cannot import model/families.py, which builds them (tests/test_families.py checks
# the lists agree); AMPLITUDE_NAMES are formats/codes.SIDE_KINDS (tests/test_model.py checks).
ENCODER_NAMES: tuple[str, ...] = ("seanet", "stft", "soundstream")
DECODER_NAMES: tuple[str, ...] = ("seanet", "spectral", "soundstream")
QUANTIZER_NAMES: tuple[str, ...] = ("rvq",)
AMPLITUDE_NAMES: tuple[str, ...] = ("none", "rms", "lufs")
NAME_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("model", "encoder"): ENCODER_NAMES,
    ("model", "decoder"): DECODER_NAMES,
    ("model", "amplitude"): AMPLITUDE_NAMES,
    ("model", "spectral_fine_mode"): ("replace", "residual"),
    ("quantizer", "kind"): QUANTIZER_NAMES,
    ("quantizer", "update"): ("ema", "loss"),
    ("loss", "gan_loss"): ("hinge", "lsgan"),
    ("train", "optimizer"): ("adamw", "adam"),
    ("train", "lr_schedule"): ("cosine", "exponential", "constant"),
    ("train", "precision"): ("fp32", "bf16"),
    ("train", "target"): ("input", "teacher"),
}


@dataclass
class ModelConfig:
    sample_rate: int = 16000
    encoder: str = "seanet"                 # "seanet" (waveform convs) | "stft" (frame-rate, reads the STFT)
    channels: int = 16                      # encoder base width (SEANet `n_filters`)
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # product = hop = 320 samples -> 50 frames/s at 16 kHz
    latent_dim: int = 64
    decoder: str = "seanet"                 # "seanet" (waveform convs) | "spectral" (frame-rate + iSTFT)
    decoder_hidden: int = 256               # width of the decoder's first layer (seed: 1024)
    residual_layers: int = 1
    lstm: bool = False                      # SEANet's optional LSTM at the bottleneck
    causal: bool = False                    # causal padding everywhere (streaming)
    spectral_layers: int = 8                # spectral decoder: ConvNeXt blocks at the frame rate
    spectral_n_fft: int = 1280              # spectral decoder: iSTFT size (hop = frame hop / spectral_upsample)
    spectral_upsample: int = 1              # spectral decoder: synthesis frames per token frame (1 = none)
    spectral_fine_layers: int = 2           # spectral decoder: ConvNeXt blocks after the upsampling
    spectral_fine_hidden: int = 128         # spectral decoder: their width
    spectral_fine_mode: str = "replace"     # "replace": one fine iSTFT | "residual": frame-rate head + fine correction
    spectral_fine_gain: float = 0.01        # residual mode: fixed gain on the fine correction (see spectral.py)
    encoder_hidden: int = 256               # stft encoder: width of its ConvNeXt blocks
    encoder_layers: int = 4                 # stft encoder: ConvNeXt blocks at the frame rate
    encoder_n_fft: int = 640                # stft encoder: analysis window (hop = the frame hop)
    amplitude: str = "rms"                  # "none" | "rms" | "lufs": rms won docs/amplitude.md
    level_match: bool = False               # rms only: decode sets every 1 s chunk to its sent RMS

    @property
    def hop_length(self) -> int:
        hop = 1
        for r in self.ratios:
            hop *= r
        return hop

    @property
    def frame_rate(self) -> int:
        """Frames per second, exactly: the hop (in samples) is the truth, and a model whose hop
        does not divide its sample rate (24 kHz / 1920 = 12.5) is refused, since .tcd headers and
        token folders store a whole number of frames per second."""
        hop = self.hop_length
        if hop < 1 or self.sample_rate % hop:
            raise TelucodecError(f"config: model.sample_rate {self.sample_rate} is not a whole number of hops "
                                 f"(ratios {list(self.ratios)} make a hop of {hop} samples): the frame rate must "
                                 "be an integer, which .tcd files store")
        return self.sample_rate // hop


@dataclass
class QuantizerConfig:
    kind: str = "rvq"                       # the quantizer family (model/families.py QUANTIZERS)
    n_q: int = 12
    codebook_size: int = 1024
    update: str = "ema"                     # "ema" (EMA k-means updates) | "loss" (codebook loss)
    ema_decay: float = 0.99
    kmeans_init: bool = True
    kmeans_iters: int = 10
    dead_code_steps: int = 50               # replace entries unused for this many steps (0 = never)
    quantizer_dropout: bool = True          # random n_q per batch so one model serves every bitrate
    min_n_q_dropout: int = 1
    dropout_fraction: float = 0.0           # > 0: per-item dropout on this fraction of items (DAC: 0.5); 0: per batch
    codebook_dim: int = 0                   # > 0: DAC's factorized codes, searched L2-normalized in this many dims

    @property
    def codebook_bits(self) -> int:
        return max(1, (self.codebook_size - 1).bit_length())


@dataclass
class LossConfig:
    """Weights of every loss term; a weight of 0 switches the term off (and skips its compute)."""

    mse: float = 1.0                        # the seed's waveform MSE
    rms: float = 15.0                       # the seed's 15 * MSE(RMS), per 20 ms frame
    log_rms: float = 0.0                    # L1 of log10 frame RMS: level loss that does not vanish for quiet speech
    l1: float = 0.0                         # waveform L1 (EnCodec uses 0.1)
    mel: float = 1.0                        # multi-resolution log-mel L1
    stft: float = 1.0                       # multi-resolution spectral convergence + log magnitude
    complex_stft: float = 0.0               # compressed complex spectral MSE (phase-aware)
    phase: float = 0.0                      # anti-wrapping phase losses (instantaneous phase, group delay, frequency)
    commitment: float = 1.0
    codebook: float = 1.0                   # only with quantizer.update == "loss"
    adversarial: float = 1.0                # generator's adversarial term (after adversarial_after)
    feature_matching: float = 2.0
    mel_windows: tuple[int, ...] = (256, 512, 1024, 2048)
    n_mels: int = 64
    stft_windows: tuple[int, ...] = (512, 1024, 2048)
    phase_windows: tuple[int, ...] = (512, 1024)  # for complex_stft and phase
    rms_frame: int = 320
    gan_loss: str = "hinge"                 # "hinge" | "lsgan"
    balancer: bool = False                  # EnCodec's balancer: weights = shares of the output gradient


@dataclass
class TrainConfig:
    batch_size: int = 16
    learning_rate: float = 3e-4
    num_epochs: int = 100
    segment_seconds: float = 1.0
    crops_per_second: float = 1.0           # crops drawn per second of training audio per epoch
    steps_per_epoch: int = 0                # 0 = from data size and crops_per_second
    optimizer: str = "adamw"
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lr_schedule: str = "cosine"             # "cosine" | "exponential" | "constant"
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    quantizer_warmup_steps: int = 0         # first steps decode the unquantized latent (ESC's warm-up)
    adversarial_after: int = -1             # step at which discriminators switch on (-1 = never)
    disc_warmup_steps: int = 0              # after adversarial_after, steps in which only the critics learn
    disc_learning_rate: float = 3e-4
    disc_periods: tuple[int, ...] = (2, 3, 5, 7, 11)  # multi-period discriminators (HiFi-GAN)
    disc_stft_sizes: tuple[int, ...] = (512, 1024, 2048)  # multi-scale STFT discriminators (EnCodec)
    disc_channels: int = 16                 # base width (benchmarks/gan_cost.py: cost per step)
    val_fraction: float = 0.1
    val_speakers: tuple[str, ...] = ()      # with a manifest: hold these speakers out
    val_max_clips: int = 16
    val_max_seconds: float = 6.0
    pesq_every: int = 5                     # PESQ/STOI on a fixed validation subset every K epochs
    pesq_clips: int = 4
    samples_every: int = 5
    seed: int = 1234
    precision: str = "fp32"                 # "fp32" | "bf16" (CUDA only)
    num_workers: int = 0
    augment_gain_db: float = 0.0            # random gain of +/- this many dB per crop
    augment_noise_snr_db: float = 0.0       # 0 = off; else add white noise at >= this SNR
    freeze: tuple[str, ...] = ()            # parts kept fixed: "encoder", "quantizer", "decoder"
    target: str = "input"                   # what reconstruction losses compare with: "input" audio, or
                                            # "teacher": the start model's decode of its unquantized latent


@dataclass
class CodecConfig:
    name: str = "small"
    model: ModelConfig = field(default_factory=ModelConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: int = CONFIG_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodecConfig:
        if not isinstance(data, dict):
            raise TelucodecError("config: expected a JSON object")
        version = data.get("version", CONFIG_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise TelucodecError(f"config: version {json.dumps(version)[:40]} is not an integer")
        if version > CONFIG_VERSION:
            raise TelucodecError(f"config: version {version} is newer than this telucodec ({CONFIG_VERSION})")
        if isinstance(data.get("model", {}), dict) and "sample_rate" not in data.get("model", {}):
            raise TelucodecError("config: model.sample_rate is required (the audio rate the model codes, e.g. 16000)")
        config = cls(
            name=str(data.get("name", "custom")),
            model=_build(ModelConfig, data.get("model", {}), "model"),
            quantizer=_build(QuantizerConfig, data.get("quantizer", {}), "quantizer"),
            loss=_build(LossConfig, data.get("loss", {}), "loss"),
            train=_build(TrainConfig, data.get("train", {}), "train"),
            version=CONFIG_VERSION,
        )
        check_config(config)
        return config

    @classmethod
    def load(cls, path: str | Path) -> CodecConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
            raise TelucodecError(f"{path}: not a readable JSON config ({exc})") from exc
        return cls.from_dict(data)

    def architecture(self) -> dict[str, Any]:
        """The fields that decide tensor shapes: two configs with equal architecture share weights.
        Decode-time options (`level_match`) are left out: they change no weight and no code, so
        turning one on must not change the model id and orphan bitstreams already written; so are
        fields of `ADDED_LATER` at their neutral value, and the stft encoder's sizes in a model with
        the SEANet encoder."""
        unused = ("encoder_hidden", "encoder_layers", "encoder_n_fft") if self.model.encoder == "seanet" else ()
        arch = {k: v for k, v in asdict(self.model).items()
                if k not in ("level_match", *unused) and ADDED_LATER.get(k, object()) != v}
        arch.update({k: v for k, v in asdict(self.quantizer).items() if k in ("n_q", "codebook_size")})
        return arch


# A config.json may come from a stranger (a downloaded model folder): each value must have its
# field's type, and the architecture's numbers a size the loader can build in bounded time
# (benchmarks/fuzz.py `model`); whether the weights file can hold it is checked when loading.
MAX_ARCH_INT = 1 << 16      # any integer of the model and quantizer sections
MAX_ARCH_COUNT = 64         # layer counts, stage counts, and each entry of `ratios`
ARCH_COUNTS = {"residual_layers", "spectral_layers", "spectral_fine_layers", "encoder_layers", "spectral_upsample",
               "n_q", "kmeans_iters", "ratios"}


def _checked(section: str, key: str, value: Any, default: Any) -> Any:
    """`value` as the type of `default` (a list for a tuple field), or a one-line TelucodecError."""
    where = f"config: {section}.{key} = {json.dumps(value)[:60]}"
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise TelucodecError(f"{where}: expected a list")
        element = type(default[0]) if default else str
        return tuple(_checked(section, key, v, element()) for v in value)
    if isinstance(default, bool) or isinstance(default, str):
        ok = type(value) is type(default)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:  # float: an integer is a float too
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise TelucodecError(f"{where}: expected {'a finite number' if isinstance(default, float) else type(default).__name__}")
    if section in ("model", "quantizer") and isinstance(value, int) and not isinstance(value, bool):
        top = MAX_ARCH_COUNT if key in ARCH_COUNTS else MAX_ARCH_INT
        if not 0 <= value <= top:
            raise TelucodecError(f"{where}: outside 0..{top}")
    return value


def check_config(config: CodecConfig) -> None:
    """Refuse, in one line, a name no part of telucodec knows (listing the accepted ones) and a
    model whose frame rate is not a whole number (`ModelConfig.frame_rate`)."""
    for (section, key), accepted in NAME_FIELDS.items():
        value = getattr(getattr(config, section), key)
        if value not in accepted:
            raise TelucodecError(f"config: {section}.{key} {value!r} is not a known name; accepted: {', '.join(accepted)}")
    _ = config.model.frame_rate


def _build(kind: type, data: dict[str, Any], section: str):
    if not isinstance(data, dict):
        raise TelucodecError(f"config: {section} must be a JSON object")
    known = {f.name: f for f in fields(kind)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise TelucodecError(f"config: unknown {section} keys {unknown}")
    defaults = kind()
    values = {key: _checked(section, key, value, getattr(defaults, key)) for key, value in data.items()}
    if section == "model" and len(values.get("ratios", defaults.ratios)) > 8:
        raise TelucodecError("config: model.ratios: at most 8 entries")
    return kind(**values)


def _preset_tiny() -> CodecConfig:
    return CodecConfig(
        name="tiny",
        model=ModelConfig(channels=8, latent_dim=32, decoder_hidden=64, amplitude="none"),  # "none" keeps it streamable
        quantizer=QuantizerConfig(n_q=8, codebook_size=256, dead_code_steps=20),
        train=TrainConfig(batch_size=8, learning_rate=1e-3, warmup_steps=20, pesq_every=2,
                          samples_every=2, val_max_clips=4, pesq_clips=2),
    )


def _preset_small() -> CodecConfig:
    return CodecConfig(name="small")


def _preset_base() -> CodecConfig:
    return CodecConfig(
        name="base",
        model=ModelConfig(channels=32, latent_dim=128, decoder_hidden=1024, lstm=True),
        train=TrainConfig(adversarial_after=5000),
    )


def _preset_spectral() -> CodecConfig:
    """SEANet encoder + frame-rate ConvNeXt decoder ending in an iSTFT; waveform L1 pins the phase."""
    return CodecConfig(
        name="spectral",
        model=ModelConfig(channels=16, latent_dim=64, decoder="spectral", decoder_hidden=256,
                          spectral_layers=6, amplitude="rms"),
        loss=LossConfig(l1=1.0, log_rms=1.0),
        train=TrainConfig(learning_rate=1e-3, adversarial_after=4000, warmup_steps=500),
    )


DEFAULT_PRESET = "small"  # what training builds with neither --config nor --init_from
PRESETS = {"tiny": _preset_tiny, "small": _preset_small, "base": _preset_base,
           "spectral": _preset_spectral}


def get_config(name_or_path: str) -> CodecConfig:
    """A preset by name, or a JSON file written by `CodecConfig.save`."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]()
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        return CodecConfig.load(path)
    raise TelucodecError(f"--config {name_or_path}: not a preset ({', '.join(PRESETS)}) nor a JSON file")


def with_overrides(config: CodecConfig, **train_overrides: Any) -> CodecConfig:
    """A copy with some TrainConfig fields replaced (values of None are ignored)."""
    changes = {k: v for k, v in train_overrides.items() if v is not None}
    return replace(config, train=replace(config.train, **changes))
