"""``python -m practice_torch.data list | prepare``."""

from __future__ import annotations

import sys

from practice_torch.data import all_datasets


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "list"
    infos = all_datasets()
    if command == "list":
        for info in infos.values():
            print(f"{info.name:<15} {info.modality:<6} x {str(info.shape):<14} {info.dtype} {info.value_range:<18} "
                  f"y: {info.condition}\n{'':<22}splits: {info.splits}\n{'':<22}source: {info.source}")
        return 0
    if command == "prepare":
        for info in infos.values():
            if info.prepare is not None:
                print(f"{info.name}: {info.prepare()}", flush=True)
        return 0
    print(f"error: unknown command {command!r}; use list or prepare", file=sys.stderr)
    return 2


raise SystemExit(main(sys.argv[1:]))
