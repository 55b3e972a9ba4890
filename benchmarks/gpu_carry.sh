#!/usr/bin/env bash
# What a lent GPU machine lacks, gathered where the device tool's `carry` takes it from (docs/gpu.md), in one command:
#   .gpu-cache/   the prepared Shakespeare, the feature networks, Fashion-MNIST's IDX files (the GPU machine has no
#                 Debian package, 30 MB) and galaxies/galaxies_32.npz with each split cut to its first --galaxies N
#                 galaxies (4 KB each; a step's time does not depend on a split's size, and the whole file, 55 MB,
#                 does not fit beside the repository), and spoken_digits/ with each split cut to its first --spoken N
#                 clips (32 KB each; the whole set, 71 MB, does not fit either); read there through
#                 GENERATIVE_TWINS_DATA=$PWD/.gpu-cache
#   .whl/         wheels of the packages the machine lacks (soundfile, cffi, pycparser, gymnasium,
#                 farama-notifications) for its Python 3.12, from PyPI (--no-wheels: skip)
# Both go into .git/info/exclude (git ignores them, so the call's copy of the tree leaves them out unless carried).
# Ends with their sizes and the repository's beside the call's 64 MiB limit (exit 1 when over it).
#
#   benchmarks/gpu_carry.sh                      # then: run with carry [".gpu-cache", ".whl"] (docs/gpu.md)
#   benchmarks/gpu_carry.sh --galaxies 0         # no galaxies (domain_adversarial's row is then skipped)
#   benchmarks/gpu_carry.sh --spoken 0           # no spoken digits (wavenet's row is then skipped)
set -u

OUT=.
GALAXIES=500
SPOKEN=32
WHEELS=1
FASHION=${FASHION:-/usr/share/datasets/fashion-mnist}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --galaxies) GALAXIES="$2"; shift 2 ;;
    --spoken) SPOKEN="$2"; shift 2 ;;
    --no-wheels) WHEELS=0; shift ;;
    *) echo "error: unknown option $1 (use --out DIR, --galaxies N, --spoken N, --no-wheels)" >&2; exit 2 ;;
  esac
done
case "$GALAXIES" in ''|*[!0-9]*) echo "error: --galaxies is a whole number of galaxies, got $GALAXIES" >&2; exit 2 ;; esac
case "$SPOKEN" in ''|*[!0-9]*) echo "error: --spoken is a whole number of clips, got $SPOKEN" >&2; exit 2 ;; esac
DATA=${GENERATIVE_TWINS_DATA:-$HOME/.cache/generative-twins}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
for need in shakespeare features; do
  [ -d "$DATA/$need" ] || { echo "error: $DATA/$need is missing: run make data first" >&2; exit 2; }
done
[ -d "$FASHION" ] || { echo "error: $FASHION is missing (Fashion-MNIST's IDX files): run make data first" >&2; exit 2; }
if [ "$GALAXIES" -gt 0 ] && [ ! -f "$DATA/galaxies/galaxies_32.npz" ]; then
  echo "error: $DATA/galaxies/galaxies_32.npz is missing: run make data first, or pass --galaxies 0" >&2; exit 2
fi
if [ "$SPOKEN" -gt 0 ] && [ ! -f "$DATA/spoken_digits/testing_list.txt" ]; then
  echo "error: $DATA/spoken_digits is missing: run make data first, or pass --spoken 0" >&2; exit 2
fi

set -e
CACHE="$OUT/.gpu-cache"
rm -rf "$CACHE"
mkdir -p "$CACHE/fashion-mnist"
cp -r "$DATA/shakespeare" "$DATA/features" "$CACHE/"
cp "$FASHION"/* "$CACHE/fashion-mnist/"
if [ "$GALAXIES" -gt 0 ]; then
  mkdir -p "$CACHE/galaxies"
  "$PY" - "$DATA/galaxies/galaxies_32.npz" "$CACHE/galaxies/galaxies_32.npz" "$GALAXIES" <<'EOF'
import sys

import numpy as np

source, target, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with np.load(source) as arrays:
    cut = {k: v[:n] for k, v in arrays.items()}
np.savez(target, **cut)
EOF
fi
if [ "$SPOKEN" -gt 0 ]; then  # the first N clips of each split, with the two lists that name the held-out ones
  "$PY" - "$DATA/spoken_digits" "$CACHE/spoken_digits" "$SPOKEN" <<'EOF'
import shutil
import sys
from pathlib import Path

source, target, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
held = {name: (source / name).read_text().split() for name in ("validation_list.txt", "testing_list.txt")}
listed = {rel for rels in held.values() for rel in rels}
train = sorted(rel for rel in (str(p.relative_to(source)) for p in source.glob("*/*.wav")) if rel not in listed)
target.mkdir(parents=True)
for name, rels in held.items():
    (target / name).write_text("".join(f"{rel}\n" for rel in rels[:n]))
for rel in train[:n] + [rel for rels in held.values() for rel in rels[:n]]:
    (target / rel).parent.mkdir(exist_ok=True)
    shutil.copyfile(source / rel, target / rel)
EOF
fi
if [ "$WHEELS" = 1 ]; then
  rm -rf "$OUT/.whl"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d "$OUT/.whl" \
    soundfile==0.14.0 cffi pycparser gymnasium==1.4.0 farama-notifications
fi
if [ -d "$OUT/.git" ]; then
  for path in /.gpu-cache/ /.whl/; do
    grep -qxF "$path" "$OUT/.git/info/exclude" 2>/dev/null || echo "$path" >> "$OUT/.git/info/exclude"
  done
fi
set +e

size() { du -sk "$@" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
carried=$(size "$CACHE" "$OUT/.whl")
tree=0
if [ -d "$OUT/.git" ]; then
  tree=$(cd "$OUT" && git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- 2>/dev/null \
         | tail -1 | cut -f1)
fi
total=$(( carried + tree ))
echo "carry .gpu-cache and .whl: $(( carried / 1024 )) MiB, with the tree's $(( tree / 1024 )) MiB" \
     "$(( total / 1024 )) MiB of the call's 64"
[ "$total" -le $(( 64 * 1024 )) ] || { echo "error: over the device tool's 64 MiB: pass --galaxies with fewer" >&2; exit 1; }
