#!/usr/bin/env bash
# One prepared run on a lent GPU (docs/gpu.md): each step bounded, everything under one folder, the whole within
# --budget seconds (default 540: a 10-minute call with a minute to spare). In order:
#   1. pytest -m gpu -x, each test named as it starts      (at most 75 s)              -> OUT/pytest.log
#   2. python -m benchmarks seeds: five seeds of the launch-bound MLPs trained at once (vmap) against one at a time
#                                                            (at most 150 s)  -> OUT/seeds/
#   3. gpu_steps of the presets whose rows are not from c010e5e's run (trpo, reward_model, dpo, ssm), of
#      domain_adversarial (its synchronisation removed since) and of text_to_image (compiled, as its preset asks)
#   4. gpu_steps of flow_matching's galaxies full preset (on the carried 500 galaxies a split: a step's time does
#      not depend on the split's size), with all the time left: whether its 100 000 steps fit a loan  -> OUT/galaxies/
# Step 3's models, or with --models LIST (or all) those in place of steps 2-4: one gpu_steps of the full presets,
# after short runs of the networks some of them build on (the language model the fine-tuning models start from, a
# GAN for gan_inversion; their quality does not matter to a step's time)  -> OUT/runs/, OUT/steps/
# each model's row within 150 s (--gpu-model-limit: at c010e5e TRPO's step spent a call's last 170 s unfinished)
# Each gpu_steps.json is written row by row, so a step stopped by its limit keeps the rows it measured.
# OUT/summary.txt has a line per step: its exit status and seconds (124: stopped by its time limit). --pack FILE
# then writes OUT as one .tar.gz (the device tool brings back a few files only), without OUT/runs (checkpoints).
# Afterwards, on the CPU: the rows into docs/gpu_steps.json (python -m benchmarks.gpu_publish FILE --commit C) and
# python -m shared_specs docs.
#
#   benchmarks/gpu_run.sh --out gpu-run --pack "$OUT/gpu-run.tar.gz"   # on the GPU machine
#   benchmarks/gpu_run.sh --device cpu --tiny --out /tmp/dry           # the dry run here: every command, a few steps
#   benchmarks/gpu_run.sh --models ppo,gan_inversion,vae --out gpu-run  # chosen presets (all: every one), one commit
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
MODELS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pack) PACK="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --models) MODELS="$2"; shift 2 ;;
    *) echo "error: unknown option $1 (use --device cuda|cpu, --out DIR, --budget SECONDS, --tiny, --pack FILE," \
            "--models LIST|all)" >&2
       exit 2 ;;
  esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "error: --device is cuda or cpu, got $DEVICE" >&2; exit 2 ;; esac
[ "$DEVICE" = cpu ] && export CUDA_VISIBLE_DEVICES=""  # gpu_steps takes a GPU wherever it sees one
case "$BUDGET" in ''|*[!0-9]*) echo "error: --budget is whole seconds, got $BUDGET" >&2; exit 2 ;; esac
case "$MODELS" in *[!a-z_,]*) echo "error: --models is a comma-separated list of model names or all, got $MODELS" >&2
                              exit 2 ;; esac
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
  echo "error: $OUT exists and is not empty; choose another --out" >&2; exit 2
fi
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
mkdir -p "$OUT"
START=$(date +%s)

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME CAP RESERVE CMD...: CMD under a time limit of CAP seconds, or less so that RESERVE seconds stay for the
# steps after it; its output in OUT/NAME.log, a line in OUT/summary.txt with its exit status
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

# What is left to measure after c010e5e's run (docs/gpu.md): the seeds at once; the four rows from earlier commits;
# domain_adversarial without its host synchronisation; text_to_image compiled (its captions looked up on the device).
LEFT_MODELS="reward_model,dpo,ssm,domain_adversarial,text_to_image,trpo"  # trpo last: it once ran 170 s unfinished
SEEDS_ARGS=()
STEPS_ARGS=(--gpu-set latent_diffusion:model.autoencoder_steps=200 --gpu-set text_to_image:model.autoencoder_steps=200)
if [ "$TINY" = 1 ]; then  # the dry run: every command once, tiny
  SEEDS_ARGS=(--preset quick --seeds 2 --seeds-steps 2)
  STEPS_ARGS=(--preset quick --gpu-steps 1 --gpu-set train.compile=false --gpu-set text_to_image:model.autoencoder_steps=2
              --gpu-set latent_diffusion:model.autoencoder_steps=2)
fi

# -rA: a line per test in the log; pytest's version and plugins first (the first GPU run's pytest exited 1 and left
# an empty log)
step pytest_version 20 520 "$PY" -m pytest --version --version
# -v names each test as it starts, and unbuffered output keeps what a dying process printed: so the GPU machine's
# XLA (jaxlib 0.11) was seen to abort the process on a flag of conftest's it does not know, which conftest now gives
# only to the XLA that knows it; JAX (which conftest imports) stays off the GPU
step pytest 75 440 env PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 JAX_PLATFORMS=cpu XLA_PYTHON_CLIENT_PREALLOCATE=false \
  "$PY" -m pytest -m gpu -x -v -rA -s -p no:cacheprovider tests

LAST=0  # the seconds kept for step 4
if [ -z "$MODELS" ]; then
  mkdir -p "$OUT/seeds"
  step seeds 150 240 "$PY" -m benchmarks seeds --results "$OUT/seeds" "${SEEDS_ARGS[@]}"
  MODELS=$LEFT_MODELS
  LAST=120
fi
# the runs the chosen presets build on, trained a few steps eagerly at the size those presets read
PRESET=$( [ "$TINY" = 1 ] && echo quick || echo full )
REF=(--device "$DEVICE" --preset "$PRESET" --steps 3 --set train.compile=false --set train.samples=0
     --set train.warmup_steps=1 --set train.checkpoint_every=3)
FINE_TUNING="policy_gradient ppo trpo reward_model dpo"
wants() { [ "$MODELS" = all ] || [[ ",$MODELS," == *",$1,"* ]]; }
if [ -n "$(for m in $FINE_TUNING; do wants "$m" && echo "$m"; done)" ]; then
  step reference_language_model 120 200 "$PY" -m practice_torch train language_model \
    --out "$OUT/runs/language_model" "${REF[@]}"
  for m in $FINE_TUNING; do STEPS_ARGS+=(--gpu-set "$m:model.reference=$OUT/runs/language_model"); done
fi
if wants gan_inversion; then
  step reference_gan 120 200 "$PY" -m practice_torch train gan --dataset fashion_mnist --out "$OUT/runs/gan" \
    "${REF[@]}"
  STEPS_ARGS+=(--gpu-set "gan_inversion:model.generator=$OUT/runs/gan")
fi
mkdir -p "$OUT/steps"
CHOSEN=$( [ "$MODELS" = all ] || echo "--gpu-models=$MODELS" )
step gpu_steps 600 "$LAST" "$PY" -m benchmarks gpu_steps --results "$OUT/steps" $CHOSEN --gpu-model-limit 150 \
  "${STEPS_ARGS[@]}"
if [ "$LAST" -gt 0 ]; then
  mkdir -p "$OUT/galaxies"
  step galaxies_step 600 0 "$PY" -m benchmarks gpu_steps --results "$OUT/galaxies" \
    --gpu-models flow_matching@galaxies "${STEPS_ARGS[@]}"
fi
echo "done in $(( $(date +%s) - START ))s" | tee -a "$OUT/summary.txt"
if [ -n "$PACK" ]; then
  tar czf "$PACK" --exclude=./runs -C "$OUT" . && echo "packed $OUT into $PACK (the reference runs left out)"
fi
