"""``python -m theory_jax [topic ...] [--all] [--markdown FILE]``: run derivations, claim by claim."""

from theory_jax.cli import main

raise SystemExit(main())
