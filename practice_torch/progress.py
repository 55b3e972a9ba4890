"""Progress bars that read well on a terminal and in a log.

On a terminal, ``progress`` is tqdm's bar, redrawn in place. When the stream is not a terminal (CI, ``nohup``, a
file, a pipe), redraws by carriage return would pile up into one endless line, so the bar prints whole lines
instead: one when it starts, one every ``every`` items (a tenth of the total by default; every ``LOG_SECONDS``
when the total is unknown) and one when it ends::

    vae on fashion_mnist:  10% 200/2000 [00:09<01:21, 22.1step/s, loss=212.4, ex_per_s=2829]
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm

LOG_SECONDS = 30.0
LOG_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
LOG_FORMAT_OPEN = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"  # no total known


class LogLines(tqdm):
    """tqdm that prints whole lines at a fixed cadence and never moves the cursor: for logs and pipes."""

    @staticmethod
    def status_printer(file: IO[str]):
        def print_status(line: str) -> None:
            if line.strip():
                file.write(line.rstrip() + "\n")
                file.flush()

        return print_status

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm clearing its line: a log has nothing to clear
            return False
        self.sp(self.__str__() if msg is None else msg)
        return True

    @classmethod
    def write(cls, s: str, file: IO[str] | None = None, end: str = "\n", nolock: bool = False) -> None:
        """A message as a line of its own, between the bar's lines: a log has no bar to clear (tqdm's clearing
        writes a carriage return) nor to draw again after it."""
        stream = sys.stdout if file is None else file
        stream.write(s + end)
        stream.flush()

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear in a log; ``tqdm.write`` (another class's) calls this, writes, then ``refresh``."""
        self.redraw_skipped = True

    def refresh(self, nolock: bool = False, lock_args: Any = None) -> bool:
        """The current line, except just after a ``clear``: the line in the log is still there."""
        if getattr(self, "redraw_skipped", False):
            self.redraw_skipped = False
            return True
        return super().refresh(nolock, lock_args)

    def close(self) -> None:
        if not self.disable and self.n != self.last_print_n:
            self.refresh()  # the last line, with the final count
        self.leave = False  # tqdm would print that line again and a blank one
        super().close()


def is_terminal(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def progress(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it",
             every: int | None = None, leave: bool = True, disable: bool = False, file: IO[str] | None = None,
             **kwargs: Any) -> tqdm:
    """A progress bar over ``iterable`` (or updated by hand up to ``total``) on ``file`` (default stderr).

    ``every``: on a non-terminal stream, print a line every this many items (default: a tenth of the total).
    ``leave``: on a terminal, keep the finished bar on screen. Other keywords go to tqdm."""
    stream = sys.stderr if file is None else file
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if is_terminal(stream):
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable, file=stream,
                    dynamic_ncols=True, **kwargs)
    every = every or (max(1, total // 10) if total else None)
    return LogLines(iterable, desc=desc, total=total, unit=unit, disable=disable, file=stream,
                    bar_format=LOG_FORMAT if total else LOG_FORMAT_OPEN, miniters=every or 1,
                    mininterval=0.0 if every else LOG_SECONDS, maxinterval=float("inf"), **kwargs)


def duration(seconds: float) -> str:
    """A wall time as a person reads it: '4.2 s', '3 min 05 s', '1 h 02 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"
