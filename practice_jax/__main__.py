"""``python -m practice_jax train MODEL ...``: training in JAX (``practice_jax/cli.py``); ``python -m practice_jax
sample RUN ...``: a run's samples drawn in JAX (``practice_jax/sampling.py``); ``python -m practice_jax check
[MODEL ...]``: the twin-training cases, both trainers' short runs compared (``practice_jax/check.py``); ``python -m
practice_jax --help`` (or ``train --help``): the train command's options, ``sample --help`` and ``check --help``
theirs. Without a command, or with another, the usage line on stderr and exit 2."""

import sys

USAGE = ("usage: python -m practice_jax train MODEL [--dataset D] [--preset P] [--steps N] [--set KEY=VALUE] "
         "[--out RUN] | --resume RUN  (python -m practice_jax --help: every option), or python -m practice_jax sample "
         "RUN [--n N] [--seed S] [--out FILE] [--set model.KEY=VALUE], or python -m practice_jax check [MODEL ...] "
         "[--all] [--record]")
SAMPLE_HELP = ("python -m practice_jax sample RUN [--n N] [--seed S] [--out FILE] [--set model.KEY=VALUE]: a run's "
               "samples drawn in JAX (python -m practice_jax sample --help: its options)\n"
               "python -m practice_jax check [MODEL ...] [--all] [--record]: the twin-training cases, a short run in "
               "both trainers compared step by step (python -m practice_jax check --help)")


def main(argv: list[str] | None = None) -> int:
    """The commands ``train`` (``practice_jax.cli.main``), ``sample`` (``practice_jax.sampling.main``) and ``check``
    (``practice_jax.check.main``);
    ``-h``/``--help``: train's help and a line on sample, exit 0; anything else: the usage line, exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        from practice_jax.cli import build_parser

        build_parser().print_help()
        print(f"\n{SAMPLE_HELP}")
        return 0
    if argv and argv[0] == "sample":
        from practice_jax.sampling import main as sample

        return sample(argv[1:])
    if argv and argv[0] == "check":
        from practice_jax.check import main as check

        return check(argv[1:])
    if not argv or argv[0] != "train":
        print(USAGE, file=sys.stderr)
        return 2
    from practice_jax.cli import main as train

    return train(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
