"""The quantizer fit (scripts/fit_quantizer.py) reads its latents through `Codec.encode`'s own path:
the same windows, the same context at their joins, the same amplitude normalization."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telucodec.config import get_config
from telucodec.formats.dataset import discover, load_clip
from telucodec.model.codec import ENCODE_CHUNK_SECONDS, Codec
from telucodec.train import quantizer_fit as qf

FIT_CHUNK_SECONDS = 30.0  # what the fit used to cut clips into, with no context


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seconds=st.floats(FIT_CHUNK_SECONDS + 0.5, FIT_CHUNK_SECONDS + 2.0), seed=st.integers(0, 2**16),
       amplitude=st.sampled_from(["none", "rms", "lufs"]), encoder=st.sampled_from(["seanet", "stft"]))
def test_the_fit_encodes_a_long_clip_exactly_as_codec_encode(tmp_path_factory, seconds, seed, amplitude,
                                                             encoder) -> None:
    cfg = get_config("tiny")
    cfg.model.amplitude, cfg.model.encoder = amplitude, encoder
    cfg.model.encoder_hidden, cfg.model.encoder_layers = 16, 1
    torch.manual_seed(seed)
    model = Codec(cfg).eval()
    rng = np.random.default_rng(seed)
    n = int(seconds * model.sample_rate)
    t = np.arange(n) / model.sample_rate
    wav = (0.2 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) * np.abs(np.sin(2 * np.pi * 0.3 * t))
           + 0.02 * rng.standard_normal(n)).astype(np.float32)
    folder = tmp_path_factory.mktemp("fit")
    (folder / "spk").mkdir()
    sf.write(folder / "spk" / "long.wav", wav, model.sample_rate, subtype="FLOAT")
    items = discover(folder)
    assert seconds > FIT_CHUNK_SECONDS > ENCODE_CHUNK_SECONDS and len(items) == 1
    latents = qf.encode_latents(model, items, log=lambda _: None)  # [frames, D]
    clip = load_clip(items[0], model.sample_rate).wav
    codes = model.encode(clip).codes
    assert latents.shape == (codes.shape[-1], cfg.model.latent_dim)
    with torch.no_grad():
        refit = model.quantizer.encode(latents.T.unsqueeze(0), model.max_n_q)[0]
    assert torch.equal(refit, codes)
    assert torch.equal(latents, model.latents(clip).T)
