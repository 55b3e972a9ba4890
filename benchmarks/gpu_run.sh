#!/usr/bin/env bash
# One prepared run on a lent GPU (docs/gpu.md): each step bounded, everything under one folder, the whole within
# --budget seconds (default 540: a 10-minute call with a minute to spare). In order:
#   1. pytest -m gpu -x                          (at most 45 s)          -> OUT/pytest.log
#   2. the language model's full preset, its compile warmed first: a 3-step run of the same network and compile
#      mode fills inductor's on-disk cache (what a second run on the machine has), then the 5000 steps with CUDA
#      graphs (train.compile_mode=reduce-overhead; if that run fails, again in the default mode), then eval
#                                                                                     -> OUT/runs/language_model
#   3. python -m benchmarks gpu_steps            the diffusion models not timed on an H200 yet (ddpm's and the language
#                                                model's kernels listed: --gpu-profile), each row written as it is
#                                                measured
#                                                                                     -> OUT/gpu_steps.json
#   4. gpu_steps again with CUDA graphs (train.compile=true, reduce-overhead) for the launch-bound small models,
#      ddpm and the language model, with all the time that is left       -> OUT/graphs/gpu_steps.json
# OUT/summary.txt has a line per step: its exit status and seconds (124: stopped by its time limit). --pack FILE
# then writes OUT as one .tar.gz without the checkpoints (the device tool brings back a few files only). Afterwards,
# on the CPU: the rows into docs/gpu_steps.json, make docs, and python -m practice_torch results for the trained runs
# (docs/gpu.md).
#
#   benchmarks/gpu_run.sh --out gpu-run --pack "$OUT/gpu-run.tar.gz"   # on the GPU machine
#   benchmarks/gpu_run.sh --device cpu --tiny --out /tmp/dry           # the dry run here: every command, a few steps
#
# The data the GPU machine lacks travels with the call: GENERATIVE_TWINS_DATA=<a carried folder> holding the
# prepared Shakespeare, the feature network's cache and fashion-mnist/ (the IDX files: the GPU machine has no Debian
# package); the Python packages it lacks (soundfile, cffi, pycparser, gymnasium, farama-notifications) travel as
# wheels (docs/gpu.md).
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
# steps after it; its output in OUT/NAME.log, a line in OUT/summary.txt, its exit status in LAST_RC (-1: skipped)
step() {
  local name="$1" cap="$2" reserve="$3"; shift 3
  local limit=$(( $(left) - reserve ))
  [ "$limit" -gt "$cap" ] && limit="$cap"
  if [ "$limit" -lt 5 ]; then
    echo "$name skipped: no time left" | tee -a "$OUT/summary.txt"; LAST_RC=-1; return 0
  fi
  local began=$(date +%s)
  timeout --signal=TERM --kill-after=15 "$limit" "$@" > "$OUT/$name.log" 2>&1
  LAST_RC=$?
  echo "$name rc=$LAST_RC ${limit}s-limit $(( $(date +%s) - began ))s" | tee -a "$OUT/summary.txt"
}

echo "gpu_run on $DEVICE, budget ${BUDGET}s, into $OUT ($( [ "$TINY" = 1 ] && echo tiny dry run || echo full ))" \
  | tee "$OUT/summary.txt"
"$PY" - <<'EOF' | tee -a "$OUT/summary.txt"
import torch
print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "no cuda",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF

# the models timed in step 3: ddpm (its kernels listed), the other diffusion models, guidance last (at d83278b its
# first step had not ended after 250 s); in step 4, with CUDA graphs: the launch-bound models, ddpm, the language model
STEPS_MODELS="ddpm,text_to_image,latent_diffusion,guidance"
GRAPH_MODELS="change_of_variables,vae,latent_diffusion,ddpm,language_model"
GRAPHS=(--gpu-set train.compile=true --gpu-set train.compile_mode=reduce-overhead)
LM_MODE=reduce-overhead
if [ "$TINY" = 1 ]; then  # the dry run: every command once, tiny
  STEPS_MODELS="cnf,ddpm,language_model"
  GRAPH_MODELS="vae,language_model"
  STEPS_ARGS=(--preset quick --gpu-steps 1 --gpu-set train.compile=false)
  LM_ARGS=(--preset quick --steps 3 --set train.compile=false)
  WARM_ARGS=(--preset quick --set train.compile=false)
  GRAPHS=(--gpu-set train.compile=false)
else
  # the two latent models train their autoencoder first (200 steps, not the preset's tens of thousands: the row times
  # the diffusion step)
  STEPS_ARGS=(--gpu-set latent_diffusion:model.autoencoder_steps=200 --gpu-set text_to_image:model.autoencoder_steps=200)
  LM_ARGS=(--preset full)
  WARM_ARGS=(--preset full)
fi

EVAL_ARGS=(--device "$DEVICE" --no-sample-metrics)
# -rA: a line per test in the log; pytest's version and plugins first (the first GPU run's pytest exited 1 and left
# an empty log)
step pytest_version 20 500 "$PY" -m pytest --version --version
# -s and the fault handler: twice this step exited 1 with its log cut off inside the first file (output lost)
step pytest 45 480 env PYTHONFAULTHANDLER=1 "$PY" -m pytest -m gpu -x -rA -s -p no:cacheprovider tests
# the compile warmed: 3 steps of the same network and mode (no samples; its schedule's warmup cut to fit)
step language_model_warm 90 400 "$PY" -m practice_torch train language_model --device "$DEVICE" \
  --out "$OUT/runs/language_model_warm" "${WARM_ARGS[@]}" --steps 3 --set train.warmup_steps=1 \
  --set train.samples=0 --set train.checkpoint_every=3 --set "train.compile_mode=$LM_MODE"
step language_model 150 280 "$PY" -m practice_torch train language_model --device "$DEVICE" \
  --out "$OUT/runs/language_model" "${LM_ARGS[@]}" --set "train.compile_mode=$LM_MODE"
if [ "$LAST_RC" != 0 ] && [ "$LAST_RC" != -1 ]; then  # CUDA graphs failed: the default mode
  mv "$OUT/runs/language_model" "$OUT/runs/language_model_graphs_failed" 2>/dev/null
  step language_model_default 150 250 "$PY" -m practice_torch train language_model --device "$DEVICE" \
    --out "$OUT/runs/language_model" "${LM_ARGS[@]}"
fi
cat "$OUT/runs/language_model/environment.json" >> "$OUT/language_model.log" 2>/dev/null
evaluate language_model 45 220
# the five models that fine-tune a language model start from the one just trained (its context, 256, holds their
# prompts and responses)
if [ -f "$OUT/runs/language_model/checkpoints/latest.json" ]; then
  for m in policy_gradient ppo trpo reward_model dpo; do
    STEPS_ARGS+=(--gpu-set "$m:model.reference=$OUT/runs/language_model")
  done
fi
step gpu_steps 400 80 "$PY" -m benchmarks gpu_steps --results "$OUT" --gpu-models "$STEPS_MODELS" \
  --gpu-profile 12 --gpu-profile-models ddpm,language_model "${STEPS_ARGS[@]}"
mkdir -p "$OUT/graphs"
step gpu_steps_graphs 400 0 "$PY" -m benchmarks gpu_steps --results "$OUT/graphs" --gpu-models "$GRAPH_MODELS" \
  --gpu-profile 12 --gpu-profile-models ddpm "${STEPS_ARGS[@]}" "${GRAPHS[@]}"
echo "done in $(( $(date +%s) - START ))s" | tee -a "$OUT/summary.txt"
if [ -n "$PACK" ]; then
  tar czf "$PACK" --exclude='*.safetensors' --exclude='*.state.pt' -C "$OUT" . && echo "packed $OUT into $PACK"
fi
