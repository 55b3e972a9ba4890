"""Write a model's ``Artefact``s where a person can look at them: PNG grids, WAV files, text files."""

from __future__ import annotations

from pathlib import Path

from practice_torch.engine import RunError
from practice_torch.engine.interface import Artefact

SUFFIX = {"images": ".png", "audio": ".wav", "text": ".txt"}


def write_artefact(artefact: Artefact, path: Path) -> list[Path]:
    """Write one artefact to ``path`` (its suffix must match the kind); several audio clips go to
    ``<stem>-00.wav``, ``<stem>-01.wav``, ... Returns the files written."""
    if path.suffix != SUFFIX[artefact.kind]:
        raise RunError(f"{path}: {artefact.kind} are written as {SUFFIX[artefact.kind]} files")
    path.parent.mkdir(parents=True, exist_ok=True)
    if artefact.kind == "images":
        from torchvision.utils import save_image

        save_image(artefact.data.float().clamp(0, 1), str(path), nrow=artefact.nrow, padding=2, pad_value=1.0)
        return [path]
    if artefact.kind == "audio":
        import soundfile

        clips = len(artefact.data)
        paths = [path] if clips == 1 else [path.with_name(f"{path.stem}-{i:02d}.wav") for i in range(clips)]
        for clip, p in zip(artefact.data, paths):
            soundfile.write(str(p), clip.float().clamp(-1, 1).cpu().numpy(), artefact.sample_rate)
        return paths
    path.write_text("\n\n".join(artefact.data) + "\n")
    return [path]


def write_artefacts(artefacts: list[Artefact], folder: Path) -> list[Path]:
    """Each artefact as ``folder/<name><suffix>``."""
    return [p for a in artefacts for p in write_artefact(a, folder / f"{a.name}{SUFFIX[a.kind]}")]
