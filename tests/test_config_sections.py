"""Each model family reads its own config section: what it does not read is refused in a new config
and left out of the model id, and version-1 configs (flat fields) keep loading with their old ids.

The reference for the old ids is `old_architecture` below: the hash input every model got before
version 2 (config.py at bd3c12d), written out here so a change to config.py cannot move it."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telucodec.config import FAMILY_SECTIONS, CodecConfig, ModelConfig, QuantizerConfig, get_config
from telucodec.errors import TelucodecError
from telucodec.model.codec import Codec
from telucodec.model.loading import PRETRAINED_DIR, shipped_models

# ModelConfig as it was at version 1 (bd3c12d): every field flat, with these defaults
V1_DEFAULTS = {"sample_rate": 16000, "encoder": "seanet", "channels": 16, "ratios": [8, 5, 4, 2], "latent_dim": 64,
               "decoder": "seanet", "decoder_hidden": 256, "residual_layers": 1, "lstm": False, "causal": False,
               "spectral_layers": 8, "spectral_n_fft": 1280, "spectral_upsample": 1, "spectral_fine_layers": 2,
               "spectral_fine_hidden": 128, "spectral_fine_mode": "replace", "spectral_fine_gain": 0.01,
               "encoder_hidden": 256, "encoder_layers": 4, "encoder_n_fft": 640, "amplitude": "rms",
               "level_match": False}
V1_ADDED_LATER = {"spectral_upsample": 1, "spectral_fine_layers": 2, "spectral_fine_hidden": 128,
                  "spectral_fine_mode": "replace", "encoder": "seanet", "encoder_hidden": 256,
                  "encoder_layers": 4, "encoder_n_fft": 640, "spectral_fine_gain": 0.01}
FLAT = sorted(set(V1_DEFAULTS) - {"sample_rate", "encoder", "decoder", "ratios", "latent_dim", "amplitude",
                                  "level_match"})
ENCODERS, DECODERS = ("seanet", "stft", "soundstream"), ("seanet", "spectral", "soundstream")


def old_architecture(model: dict, quantizer: dict) -> dict:
    """The model-id hash input of a version-1 config (`CodecConfig.architecture()` at bd3c12d)."""
    model = {**V1_DEFAULTS, **model}
    unused = ("encoder_hidden", "encoder_layers", "encoder_n_fft") if model["encoder"] == "seanet" else ()
    arch = {k: v for k, v in model.items()
            if k not in ("level_match", *unused) and V1_ADDED_LATER.get(k, object()) != v}
    arch.update({"n_q": quantizer.get("n_q", 12), "codebook_size": quantizer.get("codebook_size", 1024)})
    return arch


def same_json(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def used(encoder: str, decoder: str) -> set[str]:
    return set(FAMILY_SECTIONS["encoder", encoder].options) | set(FAMILY_SECTIONS["decoder", decoder].options)


def flat_value(key: str, draw) -> object:
    """A value of the flat field `key` that differs from its default and passes the config's checks."""
    default = V1_DEFAULTS[key]
    if isinstance(default, bool):
        return not default
    if key == "spectral_fine_mode":
        return "residual"
    if isinstance(default, float):
        return draw(st.sampled_from([0.02, 0.1, 0.5]))
    return draw(st.integers(1, 64).filter(lambda v: v != default))


# ---- new configs: a field the families do not read is refused by name --------------------------

@settings(max_examples=40, deadline=None)
@given(st.data())
def test_a_flat_field_its_families_do_not_read_is_refused_in_a_new_config(data) -> None:
    encoder, decoder = data.draw(st.sampled_from(ENCODERS)), data.draw(st.sampled_from(DECODERS))
    key = data.draw(st.sampled_from(sorted(set(FLAT) - used(encoder, decoder))))
    config = get_config("tiny").to_dict()
    config["model"].update(encoder=encoder, decoder=decoder)
    config["model"].pop("encoder_options", None)
    config["model"].pop("decoder_options", None)
    config["model"][key] = flat_value(key, data.draw)
    with pytest.raises(TelucodecError) as err:
        CodecConfig.from_dict(config)
    message = str(err.value)
    assert "\n" not in message and f"model.{key}" in message
    assert f"{encoder} encoder" in message and f"{decoder} decoder" in message


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_a_section_key_its_family_does_not_have_is_refused_in_one_line(data) -> None:
    part = data.draw(st.sampled_from(["encoder", "decoder"]))
    name = data.draw(st.sampled_from(ENCODERS if part == "encoder" else DECODERS))
    key = data.draw(st.sampled_from(sorted(set(FLAT) - set(FAMILY_SECTIONS[part, name].options)) + ["width"]))
    config = get_config("tiny").to_dict()
    config["model"][part] = name
    config["model"].pop("encoder_options", None)
    config["model"].pop("decoder_options", None)
    config["model"][f"{part}_options"] = {key: V1_DEFAULTS.get(key, 3)}
    with pytest.raises(TelucodecError) as err:
        CodecConfig.from_dict(config)
    message = str(err.value)
    assert "\n" not in message and f"model.{part}_options.{key}" in message and f"{name} {part}" in message


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_a_new_config_writes_each_family_its_own_section_and_reads_back_the_same(data) -> None:
    encoder, decoder = data.draw(st.sampled_from(ENCODERS)), data.draw(st.sampled_from(DECODERS))
    cfg = get_config("tiny")
    cfg.model.encoder, cfg.model.decoder = encoder, decoder
    for key in sorted(used(encoder, decoder) & {"residual_layers", "spectral_layers", "encoder_layers", "lstm"}):
        setattr(cfg.model, key, flat_value(key, data.draw))
    for key in data.draw(st.lists(st.sampled_from(FLAT), max_size=4, unique=True)):  # set, not read: dropped
        if key not in used(encoder, decoder):
            setattr(cfg.model, key, flat_value(key, data.draw))
    written = cfg.to_dict()
    assert written["version"] == 2
    model = written["model"]
    assert not set(FLAT) & set(model)
    assert set(model["encoder_options"]) == set(FAMILY_SECTIONS["encoder", encoder].options)
    assert set(model["decoder_options"]) == set(FAMILY_SECTIONS["decoder", decoder].options)
    back = CodecConfig.from_dict(json.loads(json.dumps(written)))
    assert back.to_dict() == written and back == cfg.canonical()
    assert back.architecture() == cfg.architecture()


# ---- what a family does not read is not in the model id ----------------------------------------

SMALL_SOUNDSTREAM = ModelConfig(encoder="soundstream", decoder="soundstream", channels=8, ratios=(4, 5, 2, 2),
                                latent_dim=16, amplitude="none")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fields_a_family_does_not_read_leave_its_model_id_alone(data) -> None:
    base = CodecConfig(model=SMALL_SOUNDSTREAM, quantizer=QuantizerConfig(n_q=2, codebook_size=16))
    keys = data.draw(st.lists(st.sampled_from(sorted(set(FLAT) - {"channels"})), min_size=1, max_size=5, unique=True))
    changed = replace(base, model=replace(base.model, **{k: flat_value(k, data.draw) for k in keys}))
    torch.manual_seed(0)
    a = Codec(base)
    b = Codec(changed)
    b.load_state_dict(a.state_dict())
    assert a.model_id == b.model_id
    assert base.architecture() == changed.architecture()
    wider = replace(base, model=replace(base.model, channels=4))  # what it does read: another id
    assert wider.architecture() != base.architecture()


# ---- version 1: flat fields, read as written, hashed as before ----------------------------------

def v1_model(data) -> dict:
    encoder, decoder = data.draw(st.sampled_from(ENCODERS)), data.draw(st.sampled_from(DECODERS))
    keys = data.draw(st.lists(st.sampled_from(FLAT), max_size=6, unique=True))
    model = {"sample_rate": 16000, "encoder": encoder, "decoder": decoder,
             "amplitude": data.draw(st.sampled_from(["none", "rms", "lufs"]))}
    model.update({k: flat_value(k, data.draw) for k in keys})
    if data.draw(st.booleans()):  # written in full, as `save` did, or as an older version with fewer keys
        model = {**V1_DEFAULTS, **model}
    return model


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_version_1_config_reads_as_written_and_keeps_its_old_id(data) -> None:
    model = v1_model(data)
    quantizer = {"n_q": data.draw(st.integers(1, 16)), "codebook_size": data.draw(st.sampled_from([16, 1024]))}
    cfg = CodecConfig.from_dict({"version": 1, "model": model, "quantizer": quantizer})
    assert cfg.version == 1
    assert same_json(cfg.architecture(), old_architecture(model, quantizer))
    written = cfg.to_dict()
    assert written["version"] == 1 and same_json(written["model"], {**V1_DEFAULTS, **model})
    assert same_json(CodecConfig.from_dict(written).architecture(), cfg.architecture())


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_the_migration_moves_what_each_family_reads_into_its_section(data) -> None:
    model = v1_model(data)
    old = CodecConfig.from_dict({"version": 1, "model": model})
    new = old.upgraded()
    assert new.version == 2
    sections = new.to_dict()["model"]
    for part in ("encoder", "decoder"):
        name = model[part]
        assert same_json(sections[f"{part}_options"],
                         {k: {**V1_DEFAULTS, **model}[k] for k in FAMILY_SECTIONS[part, name].options})
    assert CodecConfig.from_dict(new.to_dict()) == new
    assert old.upgraded().upgraded() == new
    # the flat fields no family reads were all that could differ: with those at their canonical
    # values the id is the old one
    canonical = {k: getattr(new.model, k) for k in FLAT}
    if all({**V1_DEFAULTS, **model}[k] == canonical[k] for k in FLAT):
        assert same_json(new.architecture(), old.architecture())


@pytest.mark.parametrize("name", shipped_models())
def test_every_shipped_model_migrates_with_its_id(name: str) -> None:
    folder = PRETRAINED_DIR / name
    file = json.loads((folder / "config.json").read_text())
    model = Codec.from_pretrained(folder)
    assert model.config.version == 1 == file["version"]
    assert same_json(model.config.architecture(), old_architecture(file["model"], file["quantizer"]))
    upgraded = Codec(model.config.upgraded())
    upgraded.load_state_dict(model.state_dict())
    upgraded.__dict__["_id_extras"] = model.__dict__.get("_id_extras", {})  # tensors the folder holds beside the weights
    if model.entropy_tables is not None:  # tables the folder holds beside the weights enter the id too
        upgraded.entropy_tables = model.entropy_tables
    assert upgraded.model_id == model.model_id
    assert asdict(upgraded.config.model)["causal"] == file["model"]["causal"]


@pytest.mark.parametrize("where", ["section", "flat"])
def test_a_misspelled_name_option_is_refused_listing_the_accepted_ones(where: str) -> None:
    data = get_config("spectral").to_dict()
    if where == "section":
        data["model"]["decoder_options"]["spectral_fine_mode"] = "residul"
    else:
        del data["model"]["decoder_options"]
        data["model"]["spectral_fine_mode"] = "residul"
    with pytest.raises(TelucodecError) as err:
        CodecConfig.from_dict(data)
    assert str(err.value) == "config: model.spectral_fine_mode 'residul' is not a known name; accepted: replace, residual"


def test_a_field_given_twice_with_two_values_is_refused() -> None:
    data = get_config("tiny").to_dict()  # seanet encoder and decoder: both read residual_layers
    data["model"]["decoder_options"]["residual_layers"] = 2
    with pytest.raises(TelucodecError, match=r"model.residual_layers is given twice, as 1 \(model.encoder_options\) "
                                             r"and as 2 \(model.decoder_options\)"):
        CodecConfig.from_dict(data)
    data["model"]["decoder_options"]["residual_layers"] = 1
    data["model"]["residual_layers"] = 1  # the same value, flat too: one field, read
    assert CodecConfig.from_dict(data) == get_config("tiny")


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 70000) | st.floats(allow_nan=False)
                           | st.sampled_from(["seanet", "stft", "spectral", "soundstream", "replace", "x"]),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FLAT + ["width"]),
                                                                                      inner, max_size=3),
                           max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(version=st.sampled_from([1, 2]), keys=st.dictionaries(
    st.sampled_from(FLAT + ["encoder", "decoder", "ratios", "latent_dim", "encoder_options", "decoder_options", "junk"]),
    JSON_VALUES, max_size=5))
def test_a_strangers_model_section_is_read_or_refused_in_one_line(version: int, keys: dict) -> None:
    """Whatever a config file holds in its model section, reading it gives a config or one line."""
    try:
        cfg = CodecConfig.from_dict({"version": version, "model": {"sample_rate": 16000, **keys}})
    except TelucodecError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert CodecConfig.from_dict(cfg.to_dict()) == cfg
