"""Taking a trained codec elsewhere: ONNX export and its numpy/onnxruntime runner, and whole
datasets turned into token shards for TTS and speech-LM training."""
