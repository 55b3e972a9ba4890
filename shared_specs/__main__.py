"""``python -m shared_specs list | check <topic>... | check --all | docs | portability``."""

from shared_specs.cli import main

raise SystemExit(main())
