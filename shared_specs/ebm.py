"""Spec cases for ``ebm``: the Langevin step and its tempered variant, the temperature, the replay buffer's refresh,
the contrastive divergence with its L2 regulariser, and the two energy networks under the weight converter.

Each function runs in ``theory_jax.ebm`` and ``practice_torch.ebm`` on the same NumPy inputs (noise, masks and fresh
uniforms included), in float64, with gradients; the networks in float32 with gradients of every weight and of x.
Third witnesses, written independently in NumPy: the Langevin step as ``langevin_step`` on E/T with step aT (for
the tempered step and the temperature), the unadjusted Langevin update as printed (IGEBM eq. 2 with lambda = 2 eps),
``np.where`` for the refresh, and the loss as sums over explicit positive and negative lists.
"""

from __future__ import annotations

import numpy as np

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

B, M = 6, 9


def _col(c, x):
    return np.reshape(c, np.shape(c) + (1,) * (x.ndim - np.ndim(c)))


# Independent references (NumPy) -----------------------------------------------------------------------------------
def ref_langevin_step(x, grad_energy, step_size, z):
    """Du & Mordatch 2019, eq. 2: x^k = x^{k-1} - lambda/2 grad E(x^{k-1}) + omega, omega ~ N(0, lambda), lambda = 2 eps."""
    lam = 2 * _col(step_size, x)
    return x - lam / 2 * grad_energy + np.sqrt(lam) * z


def ref_tempered_langevin_step(x, grad_energy, step_size, noise_scale, z):
    """``langevin_step`` on the energy E/T (gradient grad E / T) with the step a T, T = sigma^2 / (2a)."""
    temperature = _col(noise_scale, x) ** 2 / (2 * _col(step_size, x))
    return ref_langevin_step(x, grad_energy / temperature, step_size * temperature.reshape(np.shape(step_size)), z)


def ref_cd_loss(energy_pos, energy_neg, alpha):
    """sum over the positives and the negatives written out: (1/B) sum (E+ + alpha E+^2) - (1/M) sum (E- - alpha E-^2)."""
    pos = sum(e + alpha * e * e for e in energy_pos) / len(energy_pos)
    neg = sum(e - alpha * e * e for e in energy_neg) / len(energy_neg)
    return np.asarray(pos - neg)


# Input makers ---------------------------------------------------------------------------------------------------
def _langevin(rng):
    return {"x": gaussian(rng, B, 2), "grad_energy": gaussian(rng, B, 2, scale=3.0),
            "step_size": uniform(rng, B, low=1e-3, high=0.5), "z": gaussian(rng, B, 2)}


def _tempered(rng):
    return {"x": uniform(rng, B, 1, 5, 5), "grad_energy": gaussian(rng, B, 1, 5, 5, scale=0.01),
            "step_size": uniform(rng, B, low=1.0, high=10.0), "noise_scale": uniform(rng, B, low=1e-3, high=0.05),
            "z": gaussian(rng, B, 1, 5, 5)}


def _refresh(rng):
    return {"samples": gaussian(rng, 2 * B, 3), "fresh": uniform(rng, 2 * B, 3),
            "mask": (uniform(rng, 2 * B) < 0.3).astype("float64")}


def _energies(rng):
    return {"energy_pos": gaussian(rng, B, scale=2.0), "energy_neg": gaussian(rng, M, scale=2.0),
            "alpha": np.asarray(0.1)}


CONV = {"channels": (4, 8), "hidden": 8, "in_channels": 1}

CASES = (
    FunctionCase("ebm/langevin_step", "langevin_step", _langevin, grad_wrt=("x", "grad_energy", "step_size", "z"),
                 reference=ref_langevin_step),
    FunctionCase("ebm/langevin_step_images_scalar", "langevin_step",
                 lambda r: {"x": uniform(r, B, 1, 4, 4), "grad_energy": gaussian(r, B, 1, 4, 4),
                            "step_size": np.asarray(0.02), "z": gaussian(r, B, 1, 4, 4)},
                 grad_wrt=("x", "grad_energy", "step_size"), reference=ref_langevin_step),
    FunctionCase("ebm/tempered_langevin_step", "tempered_langevin_step", _tempered,
                 grad_wrt=("x", "grad_energy", "step_size", "noise_scale", "z"), reference=ref_tempered_langevin_step),
    FunctionCase("ebm/langevin_temperature", "langevin_temperature",
                 lambda r: {"step_size": uniform(r, 7, low=1e-3, high=10.0),
                            "noise_scale": uniform(r, 7, low=1e-3, high=1.0)},
                 grad_wrt=("step_size", "noise_scale"),
                 reference=lambda step_size, noise_scale: (noise_scale / np.sqrt(2 * step_size)) ** 2),
    FunctionCase("ebm/refresh_buffer", "refresh_buffer", _refresh, grad_wrt=("samples", "fresh"),
                 reference=lambda samples, fresh, mask: np.where(mask[:, None] > 0, fresh, samples)),
    FunctionCase("ebm/cd_loss", "cd_loss", _energies, grad_wrt=("energy_pos", "energy_neg", "alpha"),
                 reference=ref_cd_loss),
    FunctionCase("ebm/cd_loss_unregularised", "cd_loss",
                 lambda r: {**_energies(r), "alpha": np.asarray(0.0)}, grad_wrt=("energy_pos", "energy_neg"),
                 reference=ref_cd_loss),
    ModuleCase("ebm/mlp_energy", "MLPEnergy", {"dim": 2, "hidden": (16, 12)},
               lambda r: {"x": gaussian(r, B, 2, dtype="float32")}, grad_wrt=("x",)),
    ModuleCase("ebm/conv_energy", "ConvEnergy", CONV,
               lambda r: {"x": uniform(r, B, 1, 12, 12, dtype="float32")}, grad_wrt=("x",), image_inputs=("x",)),
    ModuleCase("ebm/conv_energy_28", "ConvEnergy", {"channels": (4, 8, 8), "hidden": 8, "in_channels": 1},
               lambda r: {"x": uniform(r, 3, 1, 28, 28, dtype="float32")}, grad_wrt=("x",), image_inputs=("x",)),
)
