"""Spec cases for ``autoencoder`` at three levels: functions, modules under the converter, training steps.

* functions: the reconstruction losses (SciPy's log-sigmoid as third witness for the BCE), the denoising
  corruption with given noise, the linear autoencoder, the PCA projection, the principal angles
  (``scipy.linalg.subspace_angles`` as third witness) and the optimal Gaussian denoiser (``scipy.linalg.solve``);
* modules: the MLP and conv encoders and whole autoencoders (reconstruction; plain, BCE and denoising losses with
  the corruption noise as input, the objective and the noise level as the loss's ``static`` settings), with gradients
  w.r.t. every weight;
* steps: three Adam / AdamW steps of the conv denoising autoencoder and the MLP autoencoder.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.special import log_expit

from shared_specs.case import FunctionCase, ModuleCase, StepCase, gaussian, uniform

B, D, K, CODE = 4, 12, 3, 4
IMAGE = (1, 8, 8)
MLP = {"image_shape": IMAGE, "code_dim": CODE, "architecture": "mlp", "hidden": (16, 12)}
CONV = {"image_shape": IMAGE, "code_dim": CODE, "architecture": "conv", "channels": (4, 8), "groups": 2}


def ref_bce(x, logits):
    """-(x log sigmoid(l) + (1 - x) log sigmoid(-l)), averaged per example, by SciPy's log_expit."""
    return -(x * log_expit(logits) + (1 - x) * log_expit(-logits)).reshape(len(x), -1).mean(-1)


def ref_pca_reconstruct(x, mean, components):
    """The projection by least squares onto the span of the components' rows (NumPy lstsq), not V^T V."""
    coef = np.linalg.lstsq(components.T, (x - mean).T, rcond=None)[0]
    return mean + (components.T @ coef).T


def ref_optimal_denoiser(x_noisy, mean, cov, noise_std):
    """mean + cov (cov + s^2 I)^-1 (x~ - mean), column by column with scipy.linalg.solve (assume_a='pos')."""
    solved = scipy.linalg.solve(cov + noise_std**2 * np.eye(len(cov)), (x_noisy - mean).T, assume_a="pos")
    return mean + (cov @ solved).T


def _components(r):
    """Orthonormal rows (K, D): the top-K right singular vectors of a random matrix, by NumPy."""
    return np.linalg.svd(r.standard_normal((20, D)), full_matrices=False)[2][:K]


def _spd(r, n):
    a = r.standard_normal((n, n))
    return a @ a.T / n + 0.3 * np.eye(n)


def _images(r, n=B):
    return uniform(r, n, *IMAGE, dtype="float32")


def _ae_batch(r):
    return {"x": _images(r), "eps": gaussian(r, B, *IMAGE, dtype="float32")}


def _batches(steps=3):
    return lambda r: [_ae_batch(r) for _ in range(steps)]


ADAM = {"name": "adam", "lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8}
ADAMW = {"name": "adamw", "lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}

CASES = (
    # functions ----------------------------------------------------------------------------------
    FunctionCase("autoencoder/reconstruction_mse", "reconstruction_mse",
                 lambda r: {"x": uniform(r, B, *IMAGE), "x_hat": uniform(r, B, *IMAGE)}, grad_wrt=("x", "x_hat"),
                 reference=lambda x, x_hat: ((x - x_hat) ** 2).reshape(len(x), -1).mean(-1)),
    FunctionCase("autoencoder/reconstruction_bce", "reconstruction_bce",
                 lambda r: {"x": uniform(r, B, *IMAGE), "logits": gaussian(r, B, *IMAGE, scale=4.0)},
                 grad_wrt=("x", "logits"), reference=ref_bce),
    FunctionCase("autoencoder/reconstruction_bce/float32-extreme-logits", "reconstruction_bce",
                 lambda r: {"x": (r.uniform(size=(B, D)) < 0.5).astype("float32"),
                            "logits": gaussian(r, B, D, scale=60.0, dtype="float32")},
                 dtype="float32", grad_wrt=("logits",), reference=ref_bce),
    FunctionCase("autoencoder/corrupt", "corrupt",
                 lambda r: {"x": uniform(r, B, *IMAGE), "eps": gaussian(r, B, *IMAGE)}, static={"noise_std": 0.3},
                 grad_wrt=("x", "eps"), reference=lambda x, eps, noise_std: x + noise_std * eps),
    FunctionCase("autoencoder/linear_autoencoder", "linear_autoencoder",
                 lambda r: {"x": gaussian(r, B, D), "encoder_weight": gaussian(r, K, D), "decoder_weight": gaussian(r, D, K),
                            "mean": gaussian(r, D)},
                 grad_wrt=("x", "encoder_weight", "decoder_weight", "mean"),
                 reference=lambda x, encoder_weight, decoder_weight, mean:
                     mean + np.einsum("dk,kj,bj->bd", decoder_weight, encoder_weight, x - mean)),
    FunctionCase("autoencoder/pca_reconstruct", "pca_reconstruct",
                 lambda r: {"x": gaussian(r, B, D), "mean": gaussian(r, D), "components": _components(r)},
                 grad_wrt=("x", "mean", "components"), reference=ref_pca_reconstruct),
    FunctionCase("autoencoder/principal_angles", "principal_angles",
                 lambda r: {"a": gaussian(r, D, K), "b": gaussian(r, D, K)},
                 reference=lambda a, b: scipy.linalg.subspace_angles(a, b)),
    FunctionCase("autoencoder/principal_angles/nearly-equal-subspaces", "principal_angles",
                 lambda r: (lambda a: {"a": a, "b": a @ gaussian(r, K, K) + 1e-7 * gaussian(r, D, K)})(gaussian(r, D, K)),
                 reference=lambda a, b: scipy.linalg.subspace_angles(a, b)),
    FunctionCase("autoencoder/optimal_denoiser", "optimal_denoiser",
                 lambda r: {"x_noisy": gaussian(r, B, 5), "mean": gaussian(r, 5), "cov": _spd(r, 5)},
                 static={"noise_std": 0.8}, grad_wrt=("x_noisy", "mean", "cov"), reference=ref_optimal_denoiser),
    # modules --------------------------------------------------------------------------------------
    ModuleCase("autoencoder/mlp_encoder", "MLPEncoder", {"image_shape": IMAGE, "code_dim": CODE, "hidden": (16, 12)},
               lambda r: {"x": _images(r)}, grad_wrt=("x",), image_inputs=("x",)),
    ModuleCase("autoencoder/conv_encoder", "ConvEncoder",
               {"image_shape": IMAGE, "code_dim": CODE, "channels": (4, 8), "groups": 2},
               lambda r: {"x": _images(r)}, grad_wrt=("x",), image_inputs=("x",)),
    ModuleCase("autoencoder/autoencoder/mlp-reconstruct", "Autoencoder", MLP, lambda r: {"x": _images(r)},
               grad_wrt=("x",), image_inputs=("x",), image_outputs=("<root>",)),
    ModuleCase("autoencoder/autoencoder/conv-reconstruct-unbounded", "Autoencoder", {**CONV, "bounded": False},
               lambda r: {"x": _images(r)}, grad_wrt=("x",), image_inputs=("x",), image_outputs=("<root>",)),
    ModuleCase("autoencoder/autoencoder/conv-denoising-loss", "Autoencoder", CONV, _ae_batch,
               method="per_example_loss", level="loglik", grad_wrt=("x", "eps"), image_inputs=("x", "eps"),
               static={"noise_std": 0.5}),
    ModuleCase("autoencoder/autoencoder/mlp-bce-loss", "Autoencoder", MLP, _ae_batch,
               method="loss", level="loglik", grad_wrt=("x",), image_inputs=("x", "eps"), static={"objective": "bce"}),
    # three optimizer steps ---------------------------------------------------------------------------
    StepCase("autoencoder/adam_steps/mlp", "Autoencoder", MLP, _batches(), ADAM, image_inputs=("x", "eps")),
    StepCase("autoencoder/adamw_steps/conv-denoising", "Autoencoder", CONV, _batches(), ADAMW,
             image_inputs=("x", "eps"), static={"noise_std": 0.5}),
)
