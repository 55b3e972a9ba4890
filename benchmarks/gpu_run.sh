#!/usr/bin/env bash
# One prepared run on a lent GPU (docs/gpu.md): each step bounded, everything under one folder, the whole within
# --budget seconds (default 540: a 10-minute call with a minute to spare). In order:
#   1. pytest -m gpu -x                          (at most 45 s)          -> OUT/pytest.log
#   2. train language_model --preset full        its 5000 steps (at most 240 s), then eval
#                                                                                     -> OUT/runs/language_model
#   3. python -m benchmarks gpu_steps            every model with a full preset, the four timed on an H100 before
#                                                (ddpm, guidance, latent_diffusion, text_to_image) last; each row
#                                                written as it is measured            -> OUT/gpu_steps.json
#   4. whatever fits of the fast full presets:   ssm (Shakespeare), ppo (CartPole), vae, each trained then evaluated
#                                                                                     -> OUT/runs/<model>
# The language model comes before the step timings: its run is bounded, while each model's compile in gpu_steps
# takes what it takes, so gpu_steps is given all the time that is left and the rows it has measured are kept.
# OUT/summary.txt has a line per step: its exit status and seconds (124: stopped by its time limit). --pack FILE
# then writes OUT as one .tar.gz without the checkpoints (the device tool brings back a few files only). Afterwards,
# on the CPU: the rows into docs/gpu_steps.json, make docs, and python -m practice_torch results for the trained runs
# (docs/gpu.md).
#
#   benchmarks/gpu_run.sh --out gpu-run --pack "$OUT/gpu-run.tar.gz"   # on the GPU machine
#   benchmarks/gpu_run.sh --device cpu --tiny --out /tmp/dry           # the dry run here: every command, a few steps
#
# The data the GPU machine lacks travels with the call: GENERATIVE_TWINS_DATA=<a carried folder> holding the
# prepared Shakespeare, the feature network's cache, fashion-mnist/ (the IDX files: the GPU machine has no Debian
# package), spoken_digits.tar.gz (unpacked there when its folder is missing) and gan-run/ (a GAN run on Fashion-MNIST
# for gan_inversion, its weights and a state of {step, ema} only); the Python packages it lacks (soundfile, cffi,
# pycparser, gymnasium, farama-notifications) travel as wheels (docs/gpu.md).
set -u

DEVICE=cuda
OUT=gpu-run
BUDGET=540
TINY=0
PACK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pack) PACK="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    *) echo "error: unknown option $1 (use --device cuda|cpu, --out DIR, --budget SECONDS, --tiny, --pack FILE)" >&2
       exit 2 ;;
  esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "error: --device is cuda or cpu, got $DEVICE" >&2; exit 2 ;; esac
case "$BUDGET" in ''|*[!0-9]*) echo "error: --budget is whole seconds, got $BUDGET" >&2; exit 2 ;; esac
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
  echo "error: $OUT exists and is not empty; choose another --out" >&2; exit 2
fi
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
mkdir -p "$OUT/runs"
START=$(date +%s)

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# evaluate NAME CAP RESERVE: `practice_torch eval` of OUT/runs/NAME, if its training left a run there
evaluate() {
  if [ ! -f "$OUT/runs/$1/config.json" ]; then
    echo "${1}_eval skipped: no run" | tee -a "$OUT/summary.txt"; return 0
  fi
  step "${1}_eval" "$2" "$3" "$PY" -m practice_torch eval "$OUT/runs/$1" "${EVAL_ARGS[@]}"
}

# step NAME CAP RESERVE CMD...: CMD under a time limit of CAP seconds, or less so that RESERVE seconds stay for the
# steps after it; its output in OUT/NAME.log and a line in OUT/summary.txt
step() {
  local name="$1" cap="$2" reserve="$3"; shift 3
  local limit=$(( $(left) - reserve ))
  [ "$limit" -gt "$cap" ] && limit="$cap"
  if [ "$limit" -lt 5 ]; then
    echo "$name skipped: no time left" | tee -a "$OUT/summary.txt"; return 0
  fi
  local began=$(date +%s)
  timeout --signal=TERM --kill-after=15 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc ${limit}s-limit $(( $(date +%s) - began ))s" | tee -a "$OUT/summary.txt"
}

echo "gpu_run on $DEVICE, budget ${BUDGET}s, into $OUT ($( [ "$TINY" = 1 ] && echo tiny dry run || echo full ))" \
  | tee "$OUT/summary.txt"
"$PY" - <<'EOF' | tee -a "$OUT/summary.txt"
import torch
print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "no cuda",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF

TIMED_BEFORE="ddpm,guidance,latent_diffusion,text_to_image"
MODELS=$("$PY" - "$TIMED_BEFORE" <<'EOF'
import sys
from practice_torch.models import models_with_preset
last = sys.argv[1].split(",")
every = models_with_preset("full")
print(",".join([m for m in every if m not in last] + [m for m in last if m in every]))
EOF
)

if [ "$TINY" = 1 ]; then  # the dry run: every command once, tiny
  STEPS_ARGS=(--preset quick --gpu-models vae,gan,language_model,ppo --gpu-steps 1)
  LM_ARGS=(--preset quick --steps 3 --set train.compile=false)
  FAST_ARGS=(--preset quick --steps 2 --set train.compile=false)
else
  # the two latent models train their autoencoder first (200 steps, not the preset's tens of thousands: the row times
  # the diffusion step); gan_inversion inverts a carried GAN run on Fashion-MNIST when the data folder holds one
  STEPS_ARGS=(--gpu-models "$MODELS" --gpu-set latent_diffusion:model.autoencoder_steps=200
              --gpu-set text_to_image:model.autoencoder_steps=200)
  [ -n "${GENERATIVE_TWINS_DATA:-}" ] && [ -d "$GENERATIVE_TWINS_DATA/gan-run" ] && \
    STEPS_ARGS+=(--gpu-set "gan_inversion:model.generator=$GENERATIVE_TWINS_DATA/gan-run")
  LM_ARGS=(--preset full)
  FAST_ARGS=(--preset full)
fi

DATA=${GENERATIVE_TWINS_DATA:-}
if [ -n "$DATA" ] && [ -f "$DATA/spoken_digits.tar.gz" ] && [ ! -d "$DATA/spoken_digits" ]; then
  tar xzf "$DATA/spoken_digits.tar.gz" -C "$DATA" && echo "unpacked $DATA/spoken_digits.tar.gz" | tee -a "$OUT/summary.txt"
fi

EVAL_ARGS=(--device "$DEVICE" --no-sample-metrics)
# -rA: a line per test in the log; pytest's version and plugins first (the first GPU run's pytest exited 1 and left
# an empty log)
step pytest_version 20 500 "$PY" -m pytest --version --version
step pytest 45 480 "$PY" -m pytest -m gpu -x -rA tests
step language_model 240 200 "$PY" -m practice_torch train language_model --device "$DEVICE" \
  --out "$OUT/runs/language_model" "${LM_ARGS[@]}"
evaluate language_model 45 180
# the five models that fine-tune a language model start from the one just trained (its context, 256, holds their
# prompts and responses)
if [ -f "$OUT/runs/language_model/checkpoints/latest.json" ]; then
  for m in policy_gradient ppo trpo reward_model dpo; do
    STEPS_ARGS+=(--gpu-set "$m:model.reference=$OUT/runs/language_model")
  done
fi
step gpu_steps 100000 0 "$PY" -m benchmarks gpu_steps --gpu-merge --results "$OUT" "${STEPS_ARGS[@]}"
step ssm 600 40 "$PY" -m practice_torch train ssm --device "$DEVICE" --out "$OUT/runs/ssm" "${FAST_ARGS[@]}"
evaluate ssm 60 10
step ppo 600 30 "$PY" -m practice_torch train ppo --dataset cartpole --device "$DEVICE" --out "$OUT/runs/ppo" \
  "${FAST_ARGS[@]}"
evaluate ppo 60 10
step vae 600 40 "$PY" -m practice_torch train vae --device "$DEVICE" --out "$OUT/runs/vae" "${FAST_ARGS[@]}"
evaluate vae 60 0
echo "done in $(( $(date +%s) - START ))s" | tee -a "$OUT/summary.txt"
if [ -n "$PACK" ]; then
  tar czf "$PACK" --exclude='*.safetensors' --exclude='*.state.pt' -C "$OUT" . && echo "packed $OUT into $PACK"
fi
