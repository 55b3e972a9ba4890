"""Mamba's synthetic tasks (Gu & Dao 2023, sec. 4.1), generated in code: selective copying and induction heads.

Both are sequences of token ids (vocabulary 16, the paper's) read by a causal sequence model; the target y is the
id the model must output at each position, ``IGNORE`` (-100, which ``F.cross_entropy`` skips) wherever nothing is
asked, so a model's loss and accuracy count only the answers.

- ``selective_copying``: ``COPY_TOKENS`` data tokens (ids 1..14) at random positions among noise (id 0) in the first
  ``length - COPY_TOKENS`` positions, then as many markers (id 15); at the k-th marker the answer is the k-th data
  token. Where the data tokens lie changes from sequence to sequence, so a time-invariant filter (a convolution, an
  LTI SSM such as S4D) cannot copy them: the model must choose what to remember from what it reads (the paper's
  Figure 2, Table 1).
- ``induction_heads``: random tokens (ids 0..14), the trigger (id 15) once at a random position followed by the
  answer token, and the trigger again last; at that last position the answer is the token that followed the first
  trigger (associative recall; the paper's Table 2 tests it at lengths up to 4096 times the training length).
  Sequences of 64 tokens; ``induction_heads_256`` draws them at the paper's training length, 256.

Each split is drawn with its own seed (train 0, val 1, test 2); ``induction_heads_at(length, n)`` draws test
sequences of any length from the test seed, for the length-generalisation curve.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from practice_torch.data import DatasetInfo, register
from practice_torch.data.text import IGNORE

VOCAB = 16  # the paper's vocabulary
NOISE, MARKER, TRIGGER = 0, VOCAB - 1, VOCAB - 1
COPY_TOKENS = 16  # tokens to copy (the paper's 16)
COPY_LENGTH = 128  # our sequences (the paper's 4096, scaled to a CPU), of which the last COPY_TOKENS are markers
INDUCTION_LENGTH = 64  # training length (the paper's 256); tested at 1x to 16x
PAPER_INDUCTION_LENGTH = 256  # ``induction_heads_256``: the paper's training length (Gu & Dao 2023, sec. 4.1.2)
SEEDS = {"train": 0, "val": 1, "test": 2}
SIZES = {"train": 50_000, "val": 1_000, "test": 2_000}


def selective_copying(n: int, rng: np.random.Generator, length: int = COPY_LENGTH,
                      tokens: int = COPY_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """x: (n, length) ids, ``tokens`` data ids in 1..VOCAB-2 at sorted random positions of the first length - tokens
    (noise elsewhere), then ``tokens`` markers; y: (n, length), the k-th data token at the k-th marker, IGNORE
    elsewhere."""
    region = length - tokens
    if region < tokens:
        raise ValueError(f"selective copying needs length >= {2 * tokens}, got {length}")
    data = rng.integers(1, VOCAB - 1, (n, tokens))
    where = np.sort(np.argsort(rng.random((n, region)), axis=1)[:, :tokens], axis=1)  # distinct positions, in order
    x = np.full((n, length), NOISE, dtype=np.int64)
    np.put_along_axis(x, where, data, axis=1)
    x[:, region:] = MARKER
    y = np.full((n, length), IGNORE, dtype=np.int64)
    y[:, region:] = data
    return x, y


def induction_heads(n: int, rng: np.random.Generator, length: int = INDUCTION_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """x: (n, length) random ids in 0..VOCAB-2, the trigger at a random position p in 0..length-3 and again last;
    y: (n, length), x[p + 1] at the last position, IGNORE elsewhere."""
    if length < 3:
        raise ValueError(f"induction heads needs length >= 3, got {length}")
    x = rng.integers(0, VOCAB - 1, (n, length))
    p = rng.integers(0, length - 2, n)
    rows = np.arange(n)
    x[rows, p] = TRIGGER
    x[:, -1] = TRIGGER
    y = np.full((n, length), IGNORE, dtype=np.int64)
    y[:, -1] = x[rows, p + 1]
    return x, y


def induction_heads_at(length: int, n: int) -> TensorDataset:
    """``n`` test sequences of induction heads of ``length`` tokens (the test seed, whatever the length)."""
    return _tensors(*induction_heads(n, np.random.default_rng([SEEDS["test"], length]), length))


def _tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


def _loader(make):
    def load(split: str, data_dir=None, limit: int | None = None) -> Dataset:
        return _tensors(*make(limit or SIZES[split], np.random.default_rng(SEEDS[split])))
    return load


_SPLITS = "train 50 000 / val 1 000 / test 2 000 sequences, each split drawn with its own seed (0, 1, 2)"
register(DatasetInfo("selective_copying", "text", (COPY_LENGTH,), "int64", f"ids 0-{VOCAB - 1}",
                     f"y: (L,) the ids to output at the {COPY_TOKENS} markers, -100 elsewhere", _SPLITS,
                     f"generated: Mamba's selective copying (Gu & Dao 2023), {COPY_TOKENS} tokens among noise in "
                     f"{COPY_LENGTH} (the paper's 4096)", _loader(selective_copying), num_classes=VOCAB))
register(DatasetInfo("induction_heads", "text", (INDUCTION_LENGTH,), "int64", f"ids 0-{VOCAB - 1}",
                     "y: (L,) the id after the first trigger at the last position, -100 elsewhere", _SPLITS,
                     f"generated: Mamba's induction heads (Gu & Dao 2023), length {INDUCTION_LENGTH} (the paper's "
                     "256), tested up to 16 times longer", _loader(induction_heads), num_classes=VOCAB))
register(DatasetInfo("induction_heads_256", "text", (PAPER_INDUCTION_LENGTH,), "int64", f"ids 0-{VOCAB - 1}",
                     "y: (L,) the id after the first trigger at the last position, -100 elsewhere", _SPLITS,
                     f"generated: Mamba's induction heads (Gu & Dao 2023) at the paper's training length, "
                     f"{PAPER_INDUCTION_LENGTH}, tested up to 16 times longer",
                     _loader(lambda n, rng: induction_heads(n, rng, PAPER_INDUCTION_LENGTH)), num_classes=VOCAB))
