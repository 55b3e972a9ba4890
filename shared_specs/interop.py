"""The weight converter: PyTorch ``state_dict`` layout <-> Flax (linen) params layout.

docs/ARCHITECTURE.md rule 2, "weights cross, seeds don't". Both directions are driven by the same
explicit rules, work on NumPy arrays only, and raise ``ConversionError`` on any name or shape
mismatch, naming the tensor. Naming convention shared by the twin modules:

* torch attribute ``enc`` <-> flax submodule ``enc`` (same names in both trees);
* torch ``ModuleList``/``Sequential`` index ``convs.0`` <-> flax list-in-setup name ``convs_0``;
* a bare ``nn.Parameter`` ``log_sigma`` <-> ``self.param("log_sigma", ...)``, unchanged;
* a parametrized tensor (``torch.nn.utils.parametrize``: ``fc.parametrizations.weight.original``) <-> the tensor
  it parametrizes (``fc.weight``), its parametrization's buffers (``fc.parametrizations.weight.0.u``) <-> the
  layer's ``batch_stats`` entries (``fc/u``; the GAN's spectral normalisation keeps its vectors there, as flax's own
  ``nn.SpectralNorm`` does).

Layer rules (torch leaf -> flax leaf, axis permutation applied to the torch array):
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


class ConversionError(ValueError):
    """A name or shape in one layout has no counterpart in the other."""


@dataclass(frozen=True)
class Rule:
    torch_leaf: str
    flax_leaf: str
    ndim: int | None  # None: any rank
    axes: tuple[int, ...] | None  # torch -> flax permutation; None: unchanged
    layer: str

    def to_flax(self, value: np.ndarray) -> np.ndarray:
        return value if self.axes is None else np.ascontiguousarray(np.transpose(value, self.axes))

    def to_torch(self, value: np.ndarray) -> np.ndarray:
        return value if self.axes is None else np.ascontiguousarray(np.transpose(value, np.argsort(self.axes)))


RULES: tuple[Rule, ...] = (
    Rule("weight", "kernel", 2, (1, 0), "Linear: (out, in) -> Dense (in, out)"),
    Rule("weight", "kernel", 3, (2, 1, 0), "Conv1d: (O, I, K) -> (K, I, O)"),
    # Conv2d (O, I, H, W) -> HWIO.  ConvTranspose2d stores (I, O, H, W), the kernel of the conv it
    # is the adjoint of; flax ConvTranspose(transpose_kernel=True) wants that conv's HWIO kernel,
    # (H, W, O, I): the same permutation.
    Rule("weight", "kernel", 4, (2, 3, 1, 0), "Conv2d/ConvTranspose2d: (O|I, I|O, H, W) -> (H, W, I|O, O|I)"),
    Rule("weight", "scale", 1, None, "LayerNorm/GroupNorm/BatchNorm: weight -> scale"),
    Rule("weight", "embedding", 2, None, "Embedding: weight -> embedding"),
    Rule("bias", "bias", None, None, "bias"),
)
__doc__ += "\n".join(f"  * {r.torch_leaf} -> {r.flax_leaf}: {r.layer}" for r in RULES)

# Running statistics (BatchNorm's; StyleGAN's tracked means): torch buffers, flax's ``batch_stats`` collection, same
# module path. torch's ``num_batches_tracked`` has no flax counterpart (torch reads it only with ``momentum=None``) and
# is dropped.
STATISTICS = {"running_mean": "mean", "running_var": "var",
              "w_avg": "w_avg", "pl_mean": "pl_mean"}  # StyleGAN's running means of w and of the path lengths
UNTRANSLATED = ("num_batches_tracked",)
__doc__ += ("\n\nBatchNorm buffers go to the ``batch_stats`` collection (``split_statistics``): "
            + ", ".join(f"{t} -> {f}" for t, f in STATISTICS.items()) + f"; {', '.join(UNTRANSLATED)} is dropped.")

IDENTITY = Rule("*", "*", None, None, "parameter with the same name in both layouts")


def _parametrized(parts: list[str]) -> list[str] | None:
    """The name parts of a parametrized tensor's original (``fc.parametrizations.weight.original`` -> ``fc.weight``)
    or of its parametrization's buffer (``fc.parametrizations.weight.0.u`` -> ``fc.u``); None for any other name."""
    if len(parts) >= 3 and parts[-3] == "parametrizations" and parts[-1] == "original":
        return parts[:-3] + [parts[-2]]
    if len(parts) >= 4 and parts[-4] == "parametrizations" and parts[-2] == "0":
        return parts[:-4] + [parts[-1]]
    return None


def _module_path(torch_name: str) -> tuple[tuple[str, ...], str]:
    """'enc.convs.0.weight' -> (('enc', 'convs_0'), 'weight'); 'fc.parametrizations.weight.original' ->
    (('fc',), 'weight')."""
    parts = torch_name.split(".")
    parts = _parametrized(parts) or parts
    path: list[str] = []
    for part in parts[:-1]:
        if part.isdigit():
            if not path:
                raise ConversionError(f"torch name {torch_name!r} starts with an index; wrap the list in a named module")
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    return tuple(path), parts[-1]


def _flatten_flax(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten_flax(value, prefix + (key,)))
        else:
            out[prefix + (key,)] = value
    return out


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x) if isinstance(x, tuple) else tuple(np.shape(x))


def _match(torch_name: str, ndim: int, flax_paths: Mapping[tuple[str, ...], Any]) -> tuple[tuple[str, ...], Rule]:
    """The flax path and the rule for one torch tensor; raises unless exactly one rule applies."""
    module, leaf = _module_path(torch_name)
    found = [(module + (r.flax_leaf,), r) for r in RULES
             if r.torch_leaf == leaf and (r.ndim is None or r.ndim == ndim) and module + (r.flax_leaf,) in flax_paths]
    if not found and module + (leaf,) in flax_paths:
        found = [(module + (leaf,), IDENTITY)]
    if len(found) != 1:
        near = sorted("/".join(p) for p in flax_paths if p[:-1] == module) or sorted("/".join(p) for p in flax_paths)[:8]
        raise ConversionError(
            f"torch tensor {torch_name!r} (rank {ndim}) matches {len(found)} flax parameters; "
            f"flax has {', '.join(near)}")
    return found[0]


def statistic_name(torch_name: str) -> str | None:
    """A torch buffer's name in the flax ``batch_stats`` layout (``norm0.running_var`` -> ``norm0.var``,
    ``fc.parametrizations.weight.0.u`` -> ``fc.u``), None for a parameter or a dropped buffer."""
    parts = torch_name.split(".")
    if parts[-1] in STATISTICS:
        return ".".join(parts[:-1] + [STATISTICS[parts[-1]]])
    buffer = _parametrized(parts) if parts[-1] != "original" else None
    return ".".join(buffer) if buffer else None


def split_statistics(state_dict: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parameters, running statistics) of a torch ``state_dict`` (or of its schema, name -> shape).

    The statistics carry their flax names (``statistic_name``: ``norm0.running_var`` -> ``norm0.var``), ready for
    ``torch_to_flax`` against a ``batch_stats`` template; ``num_batches_tracked`` is in neither."""
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for name, value in state_dict.items():
        if stat := statistic_name(name):
            stats[stat] = value
        elif name.rpartition(".")[2] not in UNTRANSLATED:
            params[name] = value
    return params, stats


def torch_to_flax(state_dict: Mapping[str, np.ndarray], flax_template: Mapping[str, Any]) -> dict[str, Any]:
    """A torch ``state_dict`` (name -> array) as flax params shaped like ``flax_template``.

    ``flax_template``: nested dict whose leaves are arrays, shape tuples or objects with ``.shape``
    (e.g. ``jax.eval_shape(model.init, ...)['params']``). Every torch tensor must map to exactly one
    template leaf of the same converted shape, and every template leaf must be filled.
    """
    targets = _flatten_flax(flax_template)
    out: dict[tuple[str, ...], np.ndarray] = {}
    for name, value in state_dict.items():
        value = np.asarray(value)
        path, rule = _match(name, value.ndim, targets)
        converted = rule.to_flax(value)
        want = _shape(getattr(targets[path], "shape", targets[path]))
        if converted.shape != want:
            raise ConversionError(f"torch {name!r} {value.shape} -> flax {'/'.join(path)} gives {converted.shape}, "
                                  f"template has {want} ({rule.layer})")
        if path in out:
            raise ConversionError(f"two torch tensors map to flax {'/'.join(path)}")
        out[path] = converted
    missing = [p for p in targets if p not in out]
    if missing:
        raise ConversionError(f"flax parameters with no torch tensor: {', '.join('/'.join(p) for p in missing)}")
    return _unflatten(out)


def flax_to_torch(params: Mapping[str, Any], torch_template: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flax params as a torch ``state_dict`` with the names and shapes of ``torch_template``.

    ``torch_template``: name -> array, tensor or shape tuple (e.g. ``module.state_dict()``).
    Raises ``ConversionError`` when a name or shape has no counterpart, either way round.
    """
    sources = _flatten_flax(params)
    out: dict[str, np.ndarray] = {}
    used: set[tuple[str, ...]] = set()
    for name, spec in torch_template.items():
        want = _shape(getattr(spec, "shape", spec))
        path, rule = _match(name, len(want), sources)
        converted = rule.to_torch(np.asarray(sources[path]))
        if converted.shape != want:
            raise ConversionError(f"flax {'/'.join(path)} {np.shape(sources[path])} -> torch {name!r} gives "
                                  f"{converted.shape}, template has {want} ({rule.layer})")
        out[name] = converted
        used.add(path)
    unused = [p for p in sources if p not in used]
    if unused:
        raise ConversionError(f"flax parameters with no torch counterpart: {', '.join('/'.join(p) for p in unused)}")
    return out
