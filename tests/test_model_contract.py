"""What a model is and carries: names checked when a config is read, rates the .tcd format can
carry exactly, model folders that hold weights only while the shipped models keep their ids and
bitstreams, and the quantizer's k-means start and statistics."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from telucodec import losses
from telucodec.config import AMPLITUDE_NAMES, NAME_FIELDS, CodecConfig, get_config
from telucodec.errors import ModelError, TelucodecError
from telucodec.evaluation import metrics
from telucodec.formats.audio import load_audio
from telucodec.formats.bitstream import read_bitstream, write_bitstream
from telucodec.formats.codes import SIDE_KINDS, Codes, carried_frame_rate
from telucodec.model.clustering import code_statistics
from telucodec.model.codec import Codec
from telucodec.model.loading import PRETRAINED_DIR
from telucodec.model.quantizer import ResidualVQ, VectorQuantizer
from telucodec.model.training_state import load_training_state, training_state

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_GOLDEN = ROOT / "tests" / "golden" / "shipped"
CLIP = ROOT / "examples" / "te_cv" / "cv_ce579334" / "common_voice_te_43406782.flac"


# ---- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("section, key", sorted(NAME_FIELDS))
def test_a_misspelled_name_is_refused_in_one_line_listing_the_accepted_ones(section, key):
    accepted = NAME_FIELDS[(section, key)]
    data = get_config("tiny").to_dict()
    for name in accepted:  # every accepted name reads
        data[section][key] = name
        assert getattr(getattr(CodecConfig.from_dict(data), section), key) == name
    data[section][key] = accepted[0] + "x"
    with pytest.raises(TelucodecError) as err:
        CodecConfig.from_dict(data)
    message = str(err.value)
    assert "\n" not in message and f"{section}.{key} '{accepted[0]}x'" in message
    assert message.endswith("accepted: " + ", ".join(accepted))


def test_a_misspelled_decoder_stops_training_before_anything_is_written(tmp_path, capsys):
    from telucodec.cli import main

    data = get_config("tiny").to_dict()
    data["model"]["decoder"] = "spectrall"  # the example: it used to build a SEANet decoder
    (tmp_path / "bad.json").write_text(json.dumps(data))
    rc = main(["train", "--data_dir", str(ROOT / "examples" / "te_cv"), "--checkpoint_dir", str(tmp_path / "c"),
               "--experiment_name", "x", "--config", str(tmp_path / "bad.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "model.decoder 'spectrall'" in err[0] and "spectral" in err[0]
    assert not (tmp_path / "c" / "x").exists()


def test_amplitude_names_are_the_side_kinds_the_format_stores():
    assert AMPLITUDE_NAMES == SIDE_KINDS


# ---- rates ------------------------------------------------------------------------------------

def _config_24k(ratios: tuple[int, ...]) -> CodecConfig:
    cfg = get_config("tiny")
    cfg.model.sample_rate, cfg.model.ratios = 24000, ratios
    return cfg


def test_sample_rate_is_a_required_field_of_a_config_file():
    data = get_config("tiny").to_dict()
    del data["model"]["sample_rate"]
    with pytest.raises(TelucodecError, match="model.sample_rate is required"):
        CodecConfig.from_dict(data)


def test_a_24khz_model_with_a_1920_sample_hop_is_refused_when_read_and_when_built():
    cfg = _config_24k((8, 6, 5, 8))  # hop 1920: 12.5 frames/s, which no .tcd header can hold
    with pytest.raises(TelucodecError, match="not a whole number of hops"):
        CodecConfig.from_dict(cfg.to_dict())
    with pytest.raises(TelucodecError, match="hop of 1920 samples"):
        Codec(cfg)
    with pytest.raises(ModelError, match="12.5 frames/s"):
        carried_frame_rate(24000, 1920, 8, 8)
    with pytest.raises(ModelError, match="sample rate 96000 cannot be written to .tcd"):
        carried_frame_rate(96000, 320, 8, 8)


def test_a_24khz_model_whose_hop_divides_the_rate_is_carried_exactly():
    cfg = _config_24k((8, 5, 5, 3))  # hop 600: 40 frames/s
    model = Codec(CodecConfig.from_dict(cfg.to_dict())).eval()
    assert (model.sample_rate, model.hop, model.frame_rate) == (24000, 600, 40)
    wav = (0.1 * np.random.default_rng(0).standard_normal(31234)).astype(np.float32)
    codes = model.encode(wav)  # no rate given: the model's own, nothing resampled
    assert (codes.sample_rate, codes.frame_rate, codes.num_samples, codes.num_frames) == (24000, 40, 31234, 53)
    back = read_bitstream(write_bitstream(codes))
    assert (back.sample_rate, back.frame_rate) == (24000, 40) and torch.equal(back.codes, codes.codes)
    assert model.decode(back).shape == (31234,)


def test_codes_assume_no_rates():
    with pytest.raises(TypeError):
        Codes(codes=torch.zeros(1, 3, dtype=torch.long), num_samples=900, model_id="0" * 16)  # type: ignore[call-arg]


# ---- weights ----------------------------------------------------------------------------------

SHIPPED = ("telugu-v2", "telugu-v3", "telugu-v4")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_keep_their_ids_and_write_their_old_bitstreams(name, tmp_path):
    """tests/golden/shipped/ was written by the code before constants and EMA statistics left
    `state_dict()` (commit aeb9d56, `write_bitstream(model.encode(clip[:32000], 16000, kbps))`):
    the same model still writes those bytes and decodes them."""
    folder = PRETRAINED_DIR / name
    model = Codec.from_pretrained(folder)
    card = re.search(r"Model id `([0-9a-f]{16})`", (folder / "MODEL_CARD.md").read_text()).group(1)
    assert model.model_id == card
    wav = load_audio(CLIP)[:32000]
    for kbps, entropy, suffix in ((6, False, "6kbps"), (1.5, True, "1.5kbps_entropy")):
        golden = (SHIPPED_GOLDEN / f"{name}_{suffix}.tcd").read_bytes()
        assert write_bitstream(model.encode(wav, 16000, kbps), entropy=entropy) == golden
        assert model.decode(read_bitstream(golden, expected_model_id=model.model_id)).shape == wav.shape
    assert Codec.from_bytes(model.to_bytes()).model_id == card  # how eval and tokenize workers get it
    model.save_pretrained(tmp_path / "again", dtype=torch.float16)
    assert Codec.from_pretrained(tmp_path / "again").model_id == card


def test_a_model_folder_holds_weights_only_and_a_stage_loaded_from_it_restarts_its_statistics(tmp_path):
    cfg = get_config("tiny")
    cfg.model.decoder = "spectral"
    torch.manual_seed(0)
    model = Codec(cfg)
    model(0.1 * torch.randn(12, 1, 16000))  # train mode: a k-means start and EMA updates
    assert all(bool(layer.initialized) for layer in model.quantizer.layers)
    model.save_pretrained(tmp_path / "m")
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert names == set(model.state_dict())
    assert not any(n.endswith(("cluster_size", "embed_sum", "steps_unused", "cos_basis", "sin_basis", "window_sq"))
                   for n in names)
    assert "quantizer.layers.0.initialized" in names
    again = Codec.from_pretrained(tmp_path / "m")
    assert again.model_id == model.model_id
    layer = again.quantizer.layers[3]
    assert torch.equal(layer.embed_sum, layer.codebook) and torch.equal(layer.cluster_size, torch.ones(256))
    x = 0.1 * torch.randn(1, 1, 8000)
    with torch.no_grad():
        assert torch.allclose(again.eval()(x).wav, model.eval()(x).wav, atol=1e-6)


def test_a_folder_in_the_old_layout_keeps_the_id_it_always_had(tmp_path):
    """A folder written before constants and statistics left `state_dict()` holds them: its id is
    still the hash over every tensor it holds, computed here the old way, independently."""
    cfg = get_config("tiny")
    cfg.model.decoder = "spectral"
    torch.manual_seed(1)
    model = Codec(cfg)
    model(0.1 * torch.randn(12, 1, 16000))
    old = {**model.state_dict(), **{k: v for k, v in training_state(model).items() if "kmeans" not in k},
           **{f"decoder.istft.{b}": getattr(model.decoder.istft, b) for b in ("cos_basis", "sin_basis", "window_sq")}}
    old = {k: v.detach().contiguous().half() if v.is_floating_point() else v.contiguous() for k, v in old.items()}
    (tmp_path / "old").mkdir()
    save_file(old, str(tmp_path / "old" / "model.safetensors"))
    cfg.save(tmp_path / "old" / "config.json")
    h = hashlib.sha256(json.dumps(cfg.architecture(), sort_keys=True).encode())
    for name in sorted(old):
        h.update(name.encode())
        h.update(old[name].to(torch.float32).numpy().tobytes())
    loaded = Codec.from_pretrained(tmp_path / "old")
    assert loaded.model_id == h.hexdigest()[:16]
    assert torch.equal(loaded.quantizer.layers[0].cluster_size, old["quantizer.layers.0.cluster_size"].float())
    loaded.save_pretrained(tmp_path / "resaved")  # re-saved, it writes the same tensors: the same id
    assert Codec.from_pretrained(tmp_path / "resaved").model_id == loaded.model_id


# ---- the quantizer ----------------------------------------------------------------------------

def test_the_k_means_start_collects_enough_vectors_before_clustering():
    """Batches of 8 vectors for 16 entries: the first starts the stage provisionally (those 8
    vectors can cover at most 8 of the 16 clusters), k-means runs once 32 have arrived, and a
    start interrupted half-way resumes from the training state exactly."""
    centres = 10.0 * torch.randn(16, 4, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(4)
    batches = [(centres[torch.randint(0, 16, (8,), generator=g)] + 0.01 * torch.randn(8, 4, generator=g)).t()[None]
               for _ in range(4)]
    cfg = get_config("tiny").quantizer
    cfg.codebook_size, cfg.dead_code_steps = 16, 0
    torch.manual_seed(0)
    vq, twin = VectorQuantizer(4, cfg), VectorQuantizer(4, cfg)
    vq(batches[0])
    assert not bool(vq.initialized) and len(vq.kmeans_samples) == 1
    vq(batches[1])
    state = training_state(vq)
    twin.load_state_dict(vq.state_dict())
    load_training_state(twin, state, {"codebook"})
    rng = torch.get_rng_state()
    for b in batches[2:]:
        vq(b)
    torch.set_rng_state(rng)
    for b in batches[2:]:
        twin(b)
    assert bool(vq.initialized) and not vq.kmeans_samples
    assert torch.equal(vq.codebook, twin.codebook)
    used = torch.cat(batches, dim=2)[0].t()
    present = {int(i) for i in torch.cdist(used, centres).argmin(1)}
    found = torch.cdist(centres[sorted(present)], vq.codebook).min(1).values
    assert len(present) > 8 and float(found.max()) < 0.5  # every cluster the data had got an entry


def test_quantizer_statistics_cost_one_host_copy_per_training_step(monkeypatch):
    """The issue counted 48 device-to-host syncs per step at n_q 12 (usage, perplexity, the start
    flag and the dead-entry count, per stage); what is left is one copy of all the statistics."""
    cfg = get_config("small").quantizer  # n_q 12
    cfg.codebook_size = 64
    rvq = ResidualVQ(8, cfg)
    rvq(torch.randn(2, 8, 100))  # k-means start (200 vectors >= 2 x 64)
    counted = []
    for name in ("__bool__", "__float__", "__int__", "__index__", "item", "tolist"):
        original = getattr(torch.Tensor, name)

        def spy(self, *a, _original=original, _name=name, **k):
            counted.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    out = rvq(torch.randn(2, 8, 100))
    monkeypatch.undo()
    assert counted == ["tolist"] and len(out.usage) == len(out.perplexity) == 12


def test_one_mel_filterbank_and_one_perplexity_serve_training_and_evaluation():
    assert metrics.mel_filterbank is losses.mel_filterbank
    bank = losses.mel_filterbank(16000, 1024, 64)
    assert bank.shape == (64, 513) and np.isclose(bank.max(), 1.0, atol=0.02) and (bank >= 0).all()
    counts = torch.tensor([[2, 2, 0, 0], [4, 0, 0, 0]])
    usage, perplexity = code_statistics(counts)
    assert usage.tolist() == [0.5, 0.25] and perplexity.tolist() == pytest.approx([2.0, 1.0])
