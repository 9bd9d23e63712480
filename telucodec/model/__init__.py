"""The codec: SEANet encoder, residual VQ, waveform or spectral decoder, the amplitude strategies,
streaming, `Codec` itself, and `loading` (model folders and checkpoints from disk)."""
