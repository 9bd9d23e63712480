#!/usr/bin/env bash
# One prepared GPU run of a recipe at full scale, with the discriminators, for a session that is
# lent a GPU for a few minutes (docs/training-log.md says which recipe is the current winner).
#
#   bash scripts/gpu_run.sh DATA CONFIG INIT MINUTES OUT
#
# DATA: a folder or manifest of training speech (scripts/build_manifest.py makes one); CONFIG: a
# preset or config .json; INIT: a checkpoint or model folder to start from ("-" for none);
# MINUTES: the wall budget; OUT: the checkpoint folder. Writes OUT/gpu-run/ (checkpoints, model/,
# metrics.jsonl) and OUT/nvidia-smi.txt; bring OUT back and score it on the CPU machine
# with benchmarks/recipe.py (score@OUT/gpu-run/checkpoints/last.pt) and benchmarks/bottleneck.py.
# bf16 autocast keeps the quantizer, the inverse STFT and the losses in float32; its CPU twin is
# tested (tests/test_gpu_path.py). NPROC=N (N GPUs) runs N DDP processes under torchrun, over
# NCCL for CUDA tensors and gloo for CPU ones; --batch_size is per process.
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: $0 DATA CONFIG INIT MINUTES OUT" >&2; exit 2; }
data=$1 config=$2 init=$3 minutes=$4 out=$5
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
args=(--data_dir "$data" --checkpoint_dir "$out" --experiment_name gpu-run --config "$config"
      --device cuda --precision bf16 --batch_size 64 --adversarial_after 0 --num_epochs 1000
      --max_minutes "$minutes" --overwrite --quiet)
[ "$init" != "-" ] && args+=(--init_from "$init")
[ -n "${VAL_SPEAKERS:-}" ] && args+=(--val_speakers "$VAL_SPEAKERS")
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
if [ "${NPROC:-1}" -gt 1 ]; then
  "$(dirname "$python")/torchrun" --standalone --nproc_per_node "$NPROC" train_codec.py "${args[@]}"
else
  "$python" train_codec.py "${args[@]}"
fi
