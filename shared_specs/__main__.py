"""``python -m shared_specs list | check <topic>... | check --all | readme``."""

from shared_specs.cli import main

raise SystemExit(main())
