"""``python -m practice_torch list | train | sample | eval`` (see ``practice_torch/cli.py``)."""

import sys

from practice_torch.cli import main

raise SystemExit(main(sys.argv[1:]))
