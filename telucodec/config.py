"""Configuration dataclasses, named presets and their JSON round trip.

A config is saved inside every checkpoint and model folder, so a model can always be rebuilt
from its own files. A preset is a named instance of `CodecConfig`, never a fork of the code.
This module reads best whole (over 500 lines): the schema, its two file versions with the
migration between them, and the checks a stranger's file gets are one contract; the family
sections belong to it, since this layer reads configs without the model layer that builds them.

Versions: 1 kept every model field flat; 2 writes each encoder and decoder family's options in
its own section (`model.encoder_options`, `model.decoder_options`: `FAMILY_SECTIONS`), refuses
what the chosen families do not read, and leaves that out of the model id. A version-1 file is
read as written, hashed and written back as it always was (its bitstreams stay valid);
`CodecConfig.upgraded()` moves it into sections (`--init_from` does, for the model it starts).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from telucodec.errors import TelucodecError

CONFIG_VERSION = 2

# Architecture fields added after models were shipped, with the value that reproduces the older
# models: left out of `architecture()` at that value, so the model ids (and bitstreams) of models
# made before the field existed stay valid.
ADDED_LATER = {"spectral_upsample": 1, "spectral_fine_layers": 2, "spectral_fine_hidden": 128,
               "spectral_fine_mode": "replace", "encoder": "seanet", "encoder_hidden": 256,
               "encoder_layers": 4, "encoder_n_fft": 640, "spectral_fine_gain": 0.01,
               "rms_target_db": -20.0}
# Fields added after the last release that wrote version-1 files: such a file gains one only when
# it is set away from its neutral value (so re-saving an older model writes its file unchanged).
WRITTEN_WHEN_SET = ("rms_target_db",)

# The names every name field accepts: a config is checked when it is read (`check_config`), so a
# typo is a one-line error, never a silent default. The encoder and decoder names are the families
# registered in `FAMILY_SECTIONS` (model/families.py's tables register each entry there: this layer
# cannot import them); ENCODER_NAMES / DECODER_NAMES are the built-in ones. AMPLITUDE_NAMES are
# formats/codes.SIDE_KINDS (tests/test_model.py checks).
ENCODER_NAMES: tuple[str, ...] = ("seanet", "stft", "soundstream")
DECODER_NAMES: tuple[str, ...] = ("seanet", "spectral", "soundstream")
QUANTIZER_NAMES: tuple[str, ...] = ("rvq",)
AMPLITUDE_NAMES: tuple[str, ...] = ("none", "rms", "lufs")
NAME_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("model", "amplitude"): AMPLITUDE_NAMES,
    ("quantizer", "kind"): QUANTIZER_NAMES,
    ("quantizer", "update"): ("ema", "loss", "decoder"),
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
    rms_target_db: float = -20.0            # rms only: the RMS level (dBFS) the encoder sees every chunk at
    # the encoder's / decoder's own options that are no field above (a new family's section)
    encoder_options: dict[str, Any] = field(default_factory=dict)
    decoder_options: dict[str, Any] = field(default_factory=dict)

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


PARTS = ("encoder", "decoder")
SHARED_FIELDS = ("sample_rate", "encoder", "decoder", "ratios", "latent_dim", "amplitude", "level_match",
                 "rms_target_db")
_MODEL_DEFAULTS = {f.name: f.default for f in fields(ModelConfig) if f.name not in ("encoder_options", "decoder_options")}


@dataclass(frozen=True)
class FamilySection:
    """What one encoder or decoder family reads: `options`, its keys with their defaults (a key
    that is a `ModelConfig` field is kept there, as every built-in family's are; any other in
    `encoder_options` / `decoder_options`), `implies`, the fields it fixes by construction
    (SoundStream is causal), which the canonical config (`CodecConfig.canonical`) reads, and
    `names`, the values each of its name options accepts."""

    options: dict[str, Any]
    implies: dict[str, Any] = field(default_factory=dict)
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _reads(*keys: str, implies: dict[str, Any] | None = None,
           names: dict[str, tuple[str, ...]] | None = None) -> FamilySection:
    return FamilySection({k: _MODEL_DEFAULTS[k] for k in keys}, implies or {}, names or {})


_SPECTRAL = ("spectral_layers", "spectral_n_fft", "spectral_upsample", "spectral_fine_layers",
             "spectral_fine_hidden", "spectral_fine_mode", "spectral_fine_gain")
# (part, family name) -> its section. model/families.py registers every table entry here
# (`register_family`); the built-in ones are written out because version-1 files, read without
# the model layer, keep these fields flat and the migration maps them by this table.
FAMILY_SECTIONS: dict[tuple[str, str], FamilySection] = {
    ("encoder", "seanet"): _reads("channels", "residual_layers", "lstm", "causal"),
    ("encoder", "stft"): _reads("encoder_hidden", "encoder_layers", "encoder_n_fft", "causal"),
    ("encoder", "soundstream"): _reads("channels", implies={"causal": True}),
    ("decoder", "seanet"): _reads("decoder_hidden", "residual_layers", "lstm", "causal"),
    ("decoder", "spectral"): _reads("decoder_hidden", *_SPECTRAL, "causal",
                                    names={"spectral_fine_mode": ("replace", "residual")}),
    ("decoder", "soundstream"): _reads("channels", implies={"causal": True}),
}
FAMILY_FIELDS = tuple(k for k in _MODEL_DEFAULTS if k not in SHARED_FIELDS)  # the flat fields families read


def register_family(part: str, name: str, section: FamilySection) -> None:
    """Make `name` a known `part` family reading `section` (model/families.py's tables call this)."""
    shared = sorted(set(section.options) & set(SHARED_FIELDS) | set(section.names) - set(section.options))
    if part not in PARTS or shared:
        raise ValueError(f"{part} family {name!r}: part must be one of {PARTS}; options may not name {shared}, "
                         "names only name options")
    FAMILY_SECTIONS[part, name] = section


def unregister_family(part: str, name: str) -> None:
    FAMILY_SECTIONS.pop((part, name), None)


def family_names(part: str) -> tuple[str, ...]:
    return tuple(n for p, n in FAMILY_SECTIONS if p == part)


def family_section(model: ModelConfig, part: str) -> FamilySection:
    name = getattr(model, part)
    if (part, name) not in FAMILY_SECTIONS:
        raise TelucodecError(f"config: model.{part} {name!r} is not a known name; accepted: {', '.join(family_names(part))}")
    return FAMILY_SECTIONS[part, name]


def section_values(model: ModelConfig, part: str) -> dict[str, Any]:
    """The options of the model's `part` family, every key with its value (defaults filled in):
    what a family's constructor reads."""
    extra = getattr(model, f"{part}_options")
    return {k: getattr(model, k) if k in FAMILY_FIELDS else extra.get(k, default)
            for k, default in family_section(model, part).options.items()}


def _check_names(model: ModelConfig) -> None:
    """Each name option of the model's families holds a name it accepts (a typo: one line)."""
    for part in PARTS:
        values = section_values(model, part)
        for key, accepted in family_section(model, part).names.items():
            if values[key] not in accepted:
                where = f"model.{key}" if key in FAMILY_FIELDS else f"model.{part}_options.{key}"
                raise TelucodecError(f"config: {where} {values[key]!r} is not a known name; accepted: {', '.join(accepted)}")


def _check_options(model: ModelConfig, part: str, options: Any = None) -> dict[str, Any]:
    """`options` (default: the model's options of `part`) typed as its family's defaults; a key
    the family does not have, or a value of another type, is refused in one line."""
    section, name, where = family_section(model, part), getattr(model, part), f"model.{part}_options"
    options = getattr(model, f"{part}_options") if options is None else options
    if not isinstance(options, dict):
        raise TelucodecError(f"config: {where} must be a JSON object")
    for key in options:
        if key not in section.options:
            raise TelucodecError(f"config: {where}.{key}: the {name} {part} has no such option "
                                 f"(its options: {', '.join(section.options) or 'none'})")
    return {key: _checked(where, key, value, section.options[key]) for key, value in options.items()}


def _read_sections(model: ModelConfig, given: set[str], sections: dict[str, Any]) -> ModelConfig:
    """A version-2 model section: the flat fields `given` that neither family reads are refused by
    name; each family's section goes into the fields it names, or into its options."""
    enc, dec = family_section(model, "encoder"), family_section(model, "decoder")
    unread = sorted(given & set(FAMILY_FIELDS) - set(enc.options) - set(dec.options))
    if unread:
        raise TelucodecError(f"config: model.{unread[0]} is not read by the {model.encoder} encoder nor the "
                             f"{model.decoder} decoder (their options: {', '.join({**enc.options, **dec.options})}); "
                             "leave it out")
    flat, source = {k: getattr(model, k) for k in given}, {k: f"model.{k}" for k in given}
    for part, options in sections.items():
        options = _check_options(model, part, options)
        model = replace(model, **{f"{part}_options": {k: v for k, v in options.items() if k not in FAMILY_FIELDS}})
        for key in sorted(set(options) & set(FAMILY_FIELDS)):
            if flat.get(key, options[key]) != options[key]:
                raise TelucodecError(f"config: model.{key} is given twice, as {flat[key]!r} ({source[key]}) and as "
                                     f"{options[key]!r} (model.{part}_options): one field, give it once")
            flat[key], source[key] = options[key], f"model.{part}_options"
    return replace(model, **flat)


@dataclass
class QuantizerConfig:
    kind: str = "rvq"                       # the quantizer family (model/families.py QUANTIZERS)
    n_q: int = 12
    codebook_size: int = 1024
    update: str = "ema"                     # "ema" (EMA k-means) | "loss" (codebook loss) | "decoder" (decoder's gradient)
    ema_decay: float = 0.99
    kmeans_init: bool = True
    kmeans_iters: int = 10
    dead_code_steps: int = 50               # replace entries unused for this many steps (0 = never)
    quantizer_dropout: bool = True          # random n_q per batch so one model serves every bitrate
    min_n_q_dropout: int = 1
    max_n_q_dropout: int = 0                # > 0: a dropped batch or item draws n_q in [min, this] (low rates
                                            # trained more often); 0: up to n_q
    dropout_fraction: float = 0.0           # > 0: per-item dropout on this fraction of items (DAC: 0.5); 0: per batch
    codebook_dim: int = 0                   # > 0: DAC's factorized codes, searched L2-normalized in this many dims
    codebook_sizes: tuple[int, ...] = ()    # per-stage entry counts (n_q powers of two, the largest
                                            # `codebook_size`); () = every stage `codebook_size`

    @property
    def stage_sizes(self) -> list[int]:
        """The entry count of each of the n_q stages."""
        return list(self.codebook_sizes) if self.codebook_sizes else [self.codebook_size] * self.n_q

    @property
    def stage_bits(self) -> list[int]:
        """The code width in bits of each stage (what a .tcd file spends on a plain code)."""
        return [max(1, (size - 1).bit_length()) for size in self.stage_sizes]

    @property
    def codebook_bits(self) -> int:
        """The widest stage's code width: every code of the model fits it."""
        return max(1, (self.codebook_size - 1).bit_length())

    def check_sizes(self) -> None:
        """Refuse per-stage sizes the quantizer and the .tcd format cannot carry, in one line."""
        sizes = self.codebook_sizes
        if not sizes:
            return
        where = f"config: quantizer.codebook_sizes = {list(sizes)}"[:120]
        if len(sizes) != self.n_q:
            raise TelucodecError(f"{where}: needs one size per stage, n_q = {self.n_q}")
        if any(size < 2 or size & (size - 1) for size in sizes):
            raise TelucodecError(f"{where}: every size must be a power of two >= 2")
        if max(sizes) != self.codebook_size:
            raise TelucodecError(f"{where}: quantizer.codebook_size must be the largest of them ({max(sizes)}), "
                                 f"not {self.codebook_size}")
        if self.codebook_dim:
            raise TelucodecError(f"{where}: per-stage sizes need plain stages (quantizer.codebook_dim 0)")


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
        """Version 1: every field flat, as it was read. Version 2: the shared model fields and each
        family's section, complete (so a later change of a default cannot change this model)."""
        data = asdict(self)
        if self.version < 2:
            for part in PARTS:
                del data["model"][f"{part}_options"]
            for key in WRITTEN_WHEN_SET:  # a version-1 file as earlier releases wrote it, unless set
                if data["model"][key] == ADDED_LATER[key]:
                    del data["model"][key]
            return data
        model = self.canonical().model
        data["model"] = {k: data["model"][k] for k in SHARED_FIELDS}
        data["model"].update({f"{part}_options": section_values(model, part) for part in PARTS})
        return data

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
        model_data = data.get("model", {})
        if isinstance(model_data, dict) and "sample_rate" not in model_data:
            raise TelucodecError("config: model.sample_rate is required (the audio rate the model codes, e.g. 16000)")
        version = 1 if version <= 1 else CONFIG_VERSION
        sections = {}
        if version > 1 and isinstance(model_data, dict):  # the caller's dict stays as it was
            model_data = dict(model_data)
            sections = {p: model_data.pop(f"{p}_options", {}) for p in PARTS}
        model = _build(ModelConfig, model_data if version > 1 else _flat(model_data), "model")
        config = cls(
            name=str(data.get("name", "custom")),
            model=model,
            quantizer=_build(QuantizerConfig, data.get("quantizer", {}), "quantizer"),
            loss=_build(LossConfig, data.get("loss", {}), "loss"),
            train=_build(TrainConfig, data.get("train", {}), "train"),
            version=version,
        )
        for part in PARTS:  # a misspelled family before anything about its options
            family_section(model, part)
        if version > 1:
            config = replace(config, model=_read_sections(model, set(model_data), sections))
        check_config(config)
        return config.canonical()

    @classmethod
    def load(cls, path: str | Path) -> CodecConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
            raise TelucodecError(f"{path}: not a readable JSON config ({exc})") from exc
        return cls.from_dict(data)

    def canonical(self) -> CodecConfig:
        """The same model with every flat field its families do not read at the value they imply
        (SoundStream's `causal`: true) or its default, and each new family's options complete: what
        a version-2 config writes and hashes, so a field nothing reads changes neither. A version-1
        config is its own canonical form (its id hashed every field as written)."""
        if self.version < 2:
            return self
        model = self.model
        enc, dec = family_section(model, "encoder"), family_section(model, "decoder")
        for part in PARTS:
            flat = sorted(set(_check_options(model, part)) & set(FAMILY_FIELDS))
            if flat:
                raise TelucodecError(f"config: model.{part}_options.{flat[0]}: set model.{flat[0]} (a ModelConfig field)")
        _check_names(model)
        implied = {**dec.implies, **enc.implies}
        flat = {k: implied.get(k, _MODEL_DEFAULTS[k]) for k in FAMILY_FIELDS if k not in enc.options and k not in dec.options}
        options = {f"{p}_options": {k: v for k, v in section_values(model, p).items() if k not in FAMILY_FIELDS} for p in PARTS}
        return replace(self, model=replace(model, **flat, **options))

    def upgraded(self) -> CodecConfig:
        """This config at the current version: a version-1 config's flat fields move into its
        families' sections and the ones neither family reads are dropped. Its architecture (and so
        a model's id) stays the old one wherever those held their canonical values, as every shipped
        model's do."""
        return replace(self, version=CONFIG_VERSION).canonical()

    def architecture(self) -> dict[str, Any]:
        """What the model id hashes besides the weights: the fields that build the model, in the
        flat layout every model id has hashed since version 1. Decode-time options (`level_match`)
        are left out: they change no weight and no code, so turning one on must not change the model
        id and orphan bitstreams already written; so are fields of `ADDED_LATER` at their neutral
        value, and the stft encoder's sizes in a model with the SEANet encoder. A version-2 config is
        hashed in its canonical form (fields its families do not read are constants there), plus a
        new family's own options; a version-1 config as written."""
        model = self.canonical().model
        unused = ("encoder_hidden", "encoder_layers", "encoder_n_fft") if model.encoder == "seanet" else ()
        arch = {k: v for k, v in asdict(model).items()
                if k not in ("level_match", *unused, "encoder_options", "decoder_options")
                and ADDED_LATER.get(k, object()) != v}
        arch.update({f"{p}_options": getattr(model, f"{p}_options") for p in PARTS if getattr(model, f"{p}_options")})
        arch.update({k: v for k, v in asdict(self.quantizer).items() if k in ("n_q", "codebook_size")})
        if len(set(self.quantizer.codebook_sizes)) > 1:  # only where they differ: every uniform model's id stays
            arch["codebook_sizes"] = list(self.quantizer.codebook_sizes)
        return arch


# A config.json may come from a stranger (a downloaded model folder): each value must have its
# field's type, and the architecture's numbers a size the loader can build in bounded time
# (benchmarks/fuzz.py `model`); whether the weights file can hold it is checked when loading.
MAX_ARCH_INT = 1 << 16      # any integer of the model and quantizer sections
MAX_ARCH_COUNT = 64         # layer counts, stage counts, and each entry of `ratios`
ARCH_COUNTS = {"residual_layers", "spectral_layers", "spectral_fine_layers", "encoder_layers", "spectral_upsample",
               "n_q", "kmeans_iters", "ratios"}


TUPLE_ELEMENTS = {("quantizer", "codebook_sizes"): int}  # list fields whose default is empty: their element type


def _checked(section: str, key: str, value: Any, default: Any) -> Any:
    """`value` as the type of `default` (a list for a tuple field), or a one-line TelucodecError."""
    where = f"config: {section}.{key} = {json.dumps(value)[:60]}"
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise TelucodecError(f"{where}: expected a list")
        element = type(default[0]) if default else TUPLE_ELEMENTS.get((section, key), str)
        return tuple(_checked(section, key, v, element()) for v in value)
    if isinstance(default, bool) or isinstance(default, str):
        ok = type(value) is type(default)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:  # float: an integer is a float too
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise TelucodecError(f"{where}: expected {'a finite number' if isinstance(default, float) else type(default).__name__}")
    if section.startswith(("model", "quantizer")) and isinstance(value, int) and not isinstance(value, bool):
        top = MAX_ARCH_COUNT if key in ARCH_COUNTS else MAX_ARCH_INT
        if not 0 <= value <= top:
            raise TelucodecError(f"{where}: outside 0..{top}")
    return value


def check_config(config: CodecConfig) -> None:
    """Refuse, in one line, a name no part of telucodec knows (listing the accepted ones; the
    encoder and decoder: the families registered) and a model whose frame rate is not a whole
    number (`ModelConfig.frame_rate`)."""
    _check_names(config.model)
    config.quantizer.check_sizes()
    for (section, key), accepted in NAME_FIELDS.items():
        value = getattr(getattr(config, section), key)
        if value not in accepted:
            raise TelucodecError(f"config: {section}.{key} {value!r} is not a known name; accepted: {', '.join(accepted)}")
    _ = config.model.frame_rate


def _flat(model: Any) -> Any:
    """A version-1 model section: every field flat; sections did not exist."""
    if isinstance(model, dict) and any(f"{p}_options" in model for p in PARTS):
        raise TelucodecError(f"config: unknown model keys {sorted(k for k in model if k.endswith('_options'))} "
                             "(a version-1 config has no sections)")
    return model


# Fields older files hold that no longer exist: read and dropped, since they never did anything
# (`train.num_workers`: the DataLoader workers are the machine's business, `--num_workers`).
RETIRED = {("train", "num_workers")}


def _build(kind: type, data: dict[str, Any], section: str):
    if not isinstance(data, dict):
        raise TelucodecError(f"config: {section} must be a JSON object")
    known = {f.name: f for f in fields(kind)}
    data = {k: v for k, v in data.items() if (section, k) not in RETIRED}
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
