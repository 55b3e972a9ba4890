"""``python -m practice_jax train MODEL ...``: training in JAX (``practice_jax/loop.py``)."""

import sys

from practice_jax.loop import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv or argv[0] != "train":
        print("usage: python -m practice_jax train MODEL [--dataset D] [--preset P] [--steps N] [--set KEY=VALUE] "
              "[--out RUN] | --resume RUN", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(argv[1:]))
