"""``python -m practice_jax train MODEL ...``: training in JAX (``practice_jax/loop.py``); ``python -m practice_jax
--help`` (or ``train --help``): the train command's options. Without a command, or with another, the usage line on
stderr and exit 2."""

import sys

USAGE = ("usage: python -m practice_jax train MODEL [--dataset D] [--preset P] [--steps N] [--set KEY=VALUE] "
         "[--out RUN] | --resume RUN  (python -m practice_jax --help: every option)")


def main(argv: list[str] | None = None) -> int:
    """The one command, ``train`` (``practice_jax.loop.main``); ``-h``/``--help``: its help, exit 0; anything else:
    the usage line, exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        from practice_jax.loop import build_parser

        build_parser().print_help()
        return 0
    if not argv or argv[0] != "train":
        print(USAGE, file=sys.stderr)
        return 2
    from practice_jax.loop import main as train

    return train(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
