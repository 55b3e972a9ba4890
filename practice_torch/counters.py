"""Step counters that live in a module's buffers (so checkpoints carry them) but are read on the host without a
device synchronisation at every step.

A schedule such as the GAN's n_critic cycle or the VQ-VAE's restart period needs the counter's value in Python to
choose what the step computes. ``int(buffer)`` of a CUDA tensor waits for the device; ``HostCount`` keeps a Python
mirror of the buffer instead, and re-reads the buffer only when the buffer was changed by anyone else: every in-place
write to a tensor (a ``load_state_dict`` on resume, DDP's buffer broadcast, a test's assignment) advances its
``_version``, so a mirror recorded at one version is exact as long as the version has not moved.
"""

from __future__ import annotations

import weakref

import torch

__all__ = ["HostCount"]


class HostCount:
    """The host-side mirror of one long scalar buffer: ``value(buf)`` reads it (synchronising only when the buffer
    was written since the last read or ``advance``), ``advance(buf)`` adds one on the device and to the mirror."""

    def __init__(self):
        self._seen: tuple[weakref.ref, int, int] | None = None  # (the tensor, its _version, its value)

    def value(self, buf: torch.Tensor) -> int:
        if self._seen is not None and self._seen[0]() is buf and self._seen[1] == buf._version:
            return self._seen[2]
        count = int(buf)  # the one synchronisation: the first read, and after an outside write
        self._seen = (weakref.ref(buf), buf._version, count)
        return count

    def advance(self, buf: torch.Tensor) -> int:
        """buf += 1 without a synchronisation; the new value."""
        count = self.value(buf) + 1
        with torch.no_grad():
            buf.add_(1)
        self._seen = (weakref.ref(buf), buf._version, count)
        return count
