"""Spoken digits "zero" ... "nine": synthesised with espeak-ng (default), or the real Speech Commands from --data-dir.

x: float32 (1, 16000), one second at SAMPLE_RATE in [-1, 1] (view="wave"), or (1, 64, 64) normalised log-mel
   (view="mel", see ``log_mel``; ``mel_to_waveform`` inverts it with Griffin-Lim); y: int64 digit 0-9.

The espeak set is written in the Speech Commands layout, ``<cache>/spoken_digits/<word>/<speaker>_nohash_<k>.wav``
with ``validation_list.txt`` and ``testing_list.txt``, so torchaudio's SPEECHCOMMANDS reads both. A speaker is an
English espeak-ng voice with a voice variant (e.g. ``en-us+f3``); each says each digit REPEATS times at a speed
and pitch drawn from a seed of (speaker, word, k); the clip is resampled to 16 kHz and its voiced part centred in
one second. Splits follow Speech Commands' rule (a hash of the speaker), so no speaker is in two splits.
Audio is read and written with soundfile (torchaudio.load needs FFmpeg).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio
from torch.utils.data import Dataset

from practice_torch.data import DatasetInfo, DatasetMissing, cache_dir, register

SAMPLE_RATE = 16000
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2")
REPEATS = 2
SPEEDS, PITCHES = (120, 220), (20, 80)  # espeak-ng -s (words per minute) and -p (0-99), drawn uniformly
N_FFT, HOP, N_MELS, FRAMES = 1024, 256, 64, 64
LOG_FLOOR, LOG_SHIFT, LOG_SCALE = 1e-5, 1.0, 10.5  # normalised = (ln max(mel, 1e-5) + 1) / 10.5: the floor is -1


def espeak_voices() -> list[str]:
    """The English espeak-ng voices that are built in (not MBROLA, which needs extra voice files), e.g. en-us."""
    table = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in table.splitlines()[1:]]
    return sorted({row[1] for row in rows if len(row) > 4 and row[4].startswith("gmw/")})


def speaker_split(speaker: str) -> str:
    """Speech Commands' ``which_set``: a stable hash of the speaker puts 10% in val and 10% in test."""
    max_wavs = 2**27 - 1
    percent = (int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % (max_wavs + 1)) * (100.0 / max_wavs)
    return "val" if percent < 10 else "test" if percent < 20 else "train"


def _centre(wave: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """The voiced part of ``wave`` (first to last sample above ``threshold``) centred in one second of silence."""
    loud = np.flatnonzero(np.abs(wave) > threshold)
    word = wave[loud[0]: loud[-1] + 1][:SAMPLE_RATE] if len(loud) else wave[:0]
    out = np.zeros(SAMPLE_RATE, np.float32)
    start = (SAMPLE_RATE - len(word)) // 2
    out[start: start + len(word)] = word
    return out


def _speak(speaker: str, root: Path) -> list[str]:
    """Write one speaker's clips (16 kHz mono 16-bit, 1 s) under ``root``; returns their relative paths."""
    written = []
    for word in DIGITS:
        (root / word).mkdir(exist_ok=True)
        for k in range(REPEATS):
            rng = np.random.default_rng([int(hashlib.sha1(f"{speaker}/{word}/{k}".encode()).hexdigest()[:8], 16)])
            speed, pitch = rng.integers(*SPEEDS), rng.integers(*PITCHES)
            rel = f"{word}/{speaker}_nohash_{k}.wav"
            raw = root / f"{rel}.raw.wav"
            subprocess.run(["espeak-ng", "-v", speaker, "-s", str(speed), "-p", str(pitch), "-w", str(raw), word],
                           check=True, capture_output=True)
            wave, rate = soundfile.read(raw, dtype="float32")
            wave = torchaudio.functional.resample(torch.from_numpy(wave), rate, SAMPLE_RATE).numpy()
            soundfile.write(root / rel, _centre(wave), SAMPLE_RATE, subtype="PCM_16")
            raw.unlink()
            written.append(rel)
    return written


def _espeak_root() -> Path:
    return cache_dir() / "spoken_digits"


def prepare_spoken_digits() -> str:
    """Synthesise the espeak set once (two espeak-ng processes at a time), into a temporary folder renamed at the end."""
    root = _espeak_root()
    if (root / "testing_list.txt").is_file():
        return f"cached ({root})"
    if shutil.which("espeak-ng") is None:
        return "NOT built: espeak-ng is missing (`sudo apt-get install espeak-ng`)"
    speakers = [f"{voice}+{variant}" for voice in espeak_voices() for variant in VARIANTS]
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        with ThreadPoolExecutor(2) as pool:
            clips = dict(zip(speakers, pool.map(lambda speaker: _speak(speaker, Path(tmp)), speakers)))
        for split, listing in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
            chosen = [rel for speaker, rels in clips.items() if speaker_split(speaker) == split for rel in rels]
            (Path(tmp) / listing).write_text("".join(f"{rel}\n" for rel in chosen))
        try:
            Path(tmp).rename(root)
        except OSError:  # another process finished first
            if not (root / "testing_list.txt").is_file():
                raise
    return f"built {sum(map(len, clips.values()))} clips from {len(speakers)} speakers ({root})"


@lru_cache(maxsize=1)
def _mel_transforms() -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    import torchaudio.transforms as T

    mel = T.MelSpectrogram(SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
    inverse_mel = T.InverseMelScale(N_FFT // 2 + 1, n_mels=N_MELS, sample_rate=SAMPLE_RATE)
    griffin_lim = T.GriffinLim(n_fft=N_FFT, hop_length=HOP, n_iter=64)
    return mel, inverse_mel, griffin_lim


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """(..., 16000) waveform -> (..., 64, 64) normalised log-mel: power mel (n_fft 1024, hop 256, 64 mels; 63 frames
    padded at the floor to 64), then (ln max(mel, 1e-5) + 1) / 10.5: silence is -1, the loudest espeak frames +0.95."""
    mel = _mel_transforms()[0](wave)
    mel = torch.nn.functional.pad(mel, (0, max(0, FRAMES - mel.shape[-1])))[..., :FRAMES]
    return (mel.clamp_min(LOG_FLOOR).log() + LOG_SHIFT) / LOG_SCALE


def mel_picture(x: torch.Tensor) -> torch.Tensor:
    """A normalised log-mel as a picture: (..., 64, 64) in [-1, 1] -> [0, 1], low frequencies at the bottom."""
    return ((x.clamp(-1, 1) + 1) / 2).flip(-2)


def mel_to_waveform(x: torch.Tensor) -> torch.Tensor:
    """Invert ``log_mel``: (..., 64, 64) normalised log-mel -> (..., 16000) waveform (InverseMelScale, then 64
    Griffin-Lim iterations: the phase is estimated, so it sounds rougher than the original but the envelope matches)."""
    _, inverse_mel, griffin_lim = _mel_transforms()
    power = (x * LOG_SCALE - LOG_SHIFT).exp()
    return griffin_lim(inverse_mel(power))[..., :SAMPLE_RATE]


def harmonicity(waves: torch.Tensor, sample_rate: int) -> np.ndarray:
    """How clean each clip's voice is: Praat's harmonics-to-noise ratio (Boersma 1993, the cross-correlation method
    with Praat's defaults: 10-ms steps, 75-Hz minimum pitch, silence threshold 0.1 of the clip's peak, one period per
    window), through parselmouth. HNR = 10 log10(r / (1 - r)) dB, r the normalised correlation of a frame with itself
    one period later: 0 dB is as much noise as periodic sound, a pure tone over 40 dB, white noise below 0; the
    espeak recordings reach about 11 dB at 8 kHz. waves: (N, T) at ``sample_rate`` -> the mean HNR in dB over each
    clip's frames above the silence threshold (N,), NaN for a silent clip."""
    import parselmouth

    hnr = np.full(len(waves), np.nan)
    for i, wave in enumerate(waves.detach().double().cpu().numpy()):
        frames = parselmouth.Sound(wave, sampling_frequency=sample_rate).to_harmonicity_cc().values
        sounding = frames[frames != -200]  # Praat's mark of a frame under the silence threshold
        if len(sounding):
            hnr[i] = sounding.mean()
    return hnr


class SpokenDigits(Dataset):
    """(x, y) from a list of WAV files, read on access; ``speakers[i]`` is clip i's speaker."""

    def __init__(self, files: list[Path], labels: list[int], speakers: list[str], view: str):
        if view not in ("wave", "mel"):
            raise ValueError(f"unknown view {view!r}; choose wave or mel")
        self.files, self.labels, self.speakers, self.view = files, labels, speakers, view

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        wave, _ = soundfile.read(self.files[i], dtype="float32", always_2d=True)
        x = torch.zeros(1, SAMPLE_RATE)
        x[0, : len(wave)] = torch.from_numpy(wave[:SAMPLE_RATE, 0])  # pad or crop to one second
        return (log_mel(x) if self.view == "mel" else x), torch.tensor(self.labels[i])


def load_spoken_digits(split: str, data_dir: Path | None = None, view: str = "wave", source: str = "auto",
                       limit: int | None = None) -> SpokenDigits:
    """``source``: "espeak", "speechcommands" (torchaudio SPEECHCOMMANDS v0.02 under ``data_dir``, its ten digit
    words only) or "auto" (Speech Commands when ``data_dir`` holds it, else espeak). ``limit`` keeps the first N."""
    has_sc = data_dir is not None and (Path(data_dir) / "SpeechCommands" / "speech_commands_v0.02").is_dir()
    if source == "speechcommands" or (source == "auto" and has_sc):
        if not has_sc:
            raise DatasetMissing(f"Speech Commands v0.02 is not under {data_dir}/SpeechCommands: download it with "
                                 "torchaudio.datasets.SPEECHCOMMANDS(DIR, download=True), then pass --data-dir DIR")
        root, folder, url = Path(data_dir), "SpeechCommands", "speech_commands_v0.02"
    elif source in ("auto", "espeak"):
        root, folder, url = _espeak_root().parent, "", "spoken_digits"  # SPEECHCOMMANDS reads <root>/<url basename>
        if not (root / url / "testing_list.txt").is_file():
            raise DatasetMissing(f"spoken_digits is not built under {root / url}: run `make data` "
                                 "(or `python -m practice_torch.data prepare`; needs espeak-ng)")
    else:
        raise ValueError(f"unknown source {source!r}; choose auto, espeak or speechcommands")
    subset = {"train": "training", "val": "validation", "test": "testing"}[split]
    listing = torchaudio.datasets.SPEECHCOMMANDS(root, url=url, folder_in_archive=folder, subset=subset)
    files, labels, speakers = [], [], []
    for n in range(len(listing)):
        rel, _, word, speaker, _ = listing.get_metadata(n)
        if word in DIGITS:
            files.append(root / folder / rel)
            labels.append(DIGITS.index(word))
            speakers.append(speaker)
    return SpokenDigits(files[:limit], labels[:limit], speakers[:limit], view)


register(DatasetInfo(
    "spoken_digits", "audio", (1, SAMPLE_RATE), "float32", "[-1, 1] (view=mel: (1, 64, 64), about [-1, 1])",
    "digit 0-9 (the word spoken)",
    "by speaker with Speech Commands' hash rule, no speaker in two splits (espeak-ng 1.51: 1 900 / 200 / 140 clips)",
    f"espeak-ng: English voices x {len(VARIANTS)} variants x {REPEATS} speeds/pitches, built by prepare "
    "(or torchaudio SPEECHCOMMANDS digits from --data-dir)", load_spoken_digits, num_classes=10,
    prepare=prepare_spoken_digits))
