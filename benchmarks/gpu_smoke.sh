#!/usr/bin/env bash
# The GPU presets' whole recipe, smoke-tested with random weights (nothing downloaded; docs/training.md "Smoke
# test with random weights"): for each preset, 6 training steps on 8 synthetic clips with a checkpoint at step 3,
# the run resumed from that checkpoint as a kill after step 3 would have left it, the resumed steps' losses
# compared with the straight run's, on one process and sharded (FSDP2).
# Prints seconds per step and peak memory per run.
#
#   benchmarks/gpu_smoke.sh                 on GPUs: full size (49x480x720 CogVideoX, 33x480x832 Wan), bf16;
#                                           one process on one GPU (not CogVideoX at full depth: a 5.6B full
#                                           fine-tune needs ~89 GB before activations), then FSDP2 on every
#                                           visible GPU (launch/fsdp-*.yaml); losses equal within --tolerance
#                                           (default 5e-3 relative: CUDA kernels are not deterministic)
#   benchmarks/gpu_smoke.sh --cpu --layers 2
#                                           on a CPU (CI): 9 frames at 32x48, fp32, 2 transformer and T5 layers
#                                           at full width; FSDP2 on one gloo process (SPLITMERGE_CPU_FSDP=1:
#                                           the sharded code paths; two processes' collectives are in
#                                           tests/test_train.py); losses exactly equal
# Options: --cpu, --layers N, --preset NAME (one preset), --gpus N (default: all visible), --tolerance R,
# --out DIR (kept, run weights removed; default a temporary folder, removed).
set -euo pipefail
cd "$(dirname "$0")/.."

cpu=0 layers="" presets="cogvideox-5b-i2v-stm wan-1.3b-stm" out="" gpus="" tolerance=""
usage="--cpu, --layers N, --preset NAME, --gpus N, --tolerance R, --out DIR"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) cpu=1 ;;
    --layers|--preset|--out|--gpus|--tolerance)
      if [ $# -lt 2 ]; then echo "gpu_smoke.sh: $1 needs a value ($usage)" >&2; exit 2; fi
      case "$1" in
        --layers) layers="$2" ;; --preset) presets="$2" ;; --out) out="$2" ;; --gpus) gpus="$2" ;;
        --tolerance) tolerance="$2" ;;
      esac
      shift ;;
    *) echo "gpu_smoke.sh: unknown option $1 ($usage)" >&2; exit 2 ;;
  esac
  shift
done
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
if [ -z "$out" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
export HF_HUB_OFFLINE=1
if [ "$cpu" = 1 ]; then
  tolerance=${tolerance:-0}
else
  tolerance=${tolerance:-5e-3}
  gpus=${gpus:-$("$python" -c "import torch; print(torch.cuda.device_count())")}
  if [ "$gpus" -lt 1 ]; then echo "gpu_smoke.sh: no GPU visible (--cpu runs it on a CPU)" >&2; exit 2; fi
fi

for preset in $presets; do
  config="$out/$preset.yaml"
  "$python" benchmarks/gpu_smoke_config.py "$preset" "$config" --cpu "$cpu" --layers "${layers:-0}" \
    --text-cache "$out/text_cache"
  read -r frames size < <("$python" -c "import yaml,sys; c=yaml.safe_load(open(sys.argv[1])); \
print(c['frames'], 'x'.join(map(str, c['size'])))" "$config")
  data="$out/data-${frames}x$size"
  [ -d "$data" ] || "$python" -m splitmerge.cli build --synthetic 8 --frames "$frames" --size "$size" \
    -o "$data" > /dev/null
  for sharded in 0 1; do
    if [ "$cpu" = 1 ] && [ "$sharded" = 1 ]; then
      launch=("$python" -m torch.distributed.run --nproc_per_node 1 --master_port 29541 -m splitmerge.cli)
      export SPLITMERGE_CPU_FSDP=1
    elif [ "$sharded" = 1 ]; then
      architecture=${preset%%-*}
      launch=("$python" -m accelerate.commands.launch --config_file "launch/fsdp-$architecture.yaml"
              --num_processes "$gpus" -m splitmerge.cli)
    elif [ "$cpu" = 0 ] && [ "$preset" = cogvideox-5b-i2v-stm ] && [ -z "$layers" ]; then
      echo "$preset sharded=0: skipped (a full-depth 5.6B full fine-tune does not fit one GPU)"
      continue
    else
      launch=("$python" -m splitmerge.cli)
    fi
    straight="$out/$preset-$sharded-straight" resumed="$out/$preset-$sharded-resumed"
    rm -rf "$straight" "$resumed"
    common=(train --config "$config" --data "$data")
    "${launch[@]}" "${common[@]}" -o "$straight" > /dev/null
    # the run as a kill after step 3 would have left it: its config, its logs and the step-3 checkpoint
    mkdir -p "$resumed/checkpoints"
    cp "$straight/config.json" "$straight/log.jsonl" "$resumed/"
    mv "$straight/checkpoints/step-000003" "$resumed/checkpoints/"
    rm -rf "$straight/checkpoints" "$straight/model"   # (GBs at full width; its log is what is compared)
    "${launch[@]}" "${common[@]}" -o "$resumed" --resume > /dev/null
    unset SPLITMERGE_CPU_FSDP
    "$python" benchmarks/gpu_smoke_config.py --compare "$straight" "$resumed" --label "$preset sharded=$sharded" \
      --tolerance "$tolerance"
    rm -rf "$resumed/checkpoints" "$resumed/model"   # logs, summaries and validation pictures stay
  done
done
echo "gpu_smoke: every resumed run logged its straight run's losses (relative tolerance $tolerance)"
