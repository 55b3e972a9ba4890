"""Spec cases for ``f_divergence``: generators, conjugates, output activations, objectives, in float64.

Each function runs in ``theory_jax.f_divergence`` and ``practice_torch.f_divergence`` on the same NumPy
inputs (gradients included), for each of the six divergences. Third witnesses, independent of both
twins' closed forms: the derivative f' by the complex-step rule on Table 1's f; the conjugate
f*(t) = sup_u (u t - f(u)) by solving f'(u) = t with SciPy's brentq (tv: the best vertex of a piecewise
linear function); the discrete divergences by scipy.special.rel_entr, scipy.spatial.distance.jensenshannon
and their textbook formulas.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special
from scipy.spatial.distance import jensenshannon

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

DIVERGENCES = ("kl", "reverse_kl", "js", "tv", "pearson", "hellinger")
B, K = 4, 7
LOG2 = math.log(2.0)


# Independent references (NumPy / SciPy) -------------------------------------------------------------
GENERATORS = {  # Table 1, written with np.log so that it also takes complex arguments (complex step)
    "kl": lambda u: u * np.log(u),
    "reverse_kl": lambda u: -np.log(u),
    "js": lambda u: u * np.log(u) - (u + 1) * np.log((u + 1) / 2),
    "tv": lambda u: 0.5 * np.abs(u - 1),
    "pearson": lambda u: (u - 1) ** 2,
    "hellinger": lambda u: (np.sqrt(u) - 1) ** 2,
}
SUP_OF_DERIVATIVE = {"kl": np.inf, "reverse_kl": 0.0, "js": LOG2, "tv": 0.5, "pearson": np.inf, "hellinger": 1.0}
ACTIVATIONS = {  # Table 2's g_f, as printed
    "kl": lambda v: v,
    "reverse_kl": lambda v: -np.exp(-v),
    "js": lambda v: LOG2 - np.log1p(np.exp(-v)),
    "tv": lambda v: 0.5 * np.tanh(v),
    "pearson": lambda v: v,
    "hellinger": lambda v: 1 - np.exp(-v),
}
CONJUGATES = {  # Table 2's f*, as printed (used only where the sup has been checked against brentq below)
    "kl": lambda t: np.exp(t - 1),
    "reverse_kl": lambda t: -1 - np.log(-t),
    "js": lambda t: -np.log(2 - np.exp(t)),
    "tv": lambda t: t,
    "pearson": lambda t: t**2 / 4 + t,
    "hellinger": lambda t: t / (1 - t),
}


def ref_derivative(u, divergence):
    """f'(u) by the complex step Im f(u + ih)/h, h = 1e-30 (exact to rounding for analytic f); tv: sign(u-1)/2."""
    if divergence == "tv":
        return 0.5 * np.sign(u - 1)
    return np.imag(GENERATORS[divergence](u + 1e-30j)) / 1e-30


def ref_conjugate(t, divergence):
    """sup_{u >= 0} (u t - f(u)): +inf where t is at or beyond sup f'; else the root u* of f'(u) = t (brentq in
    log u) substituted. tv: the better vertex u in {0, 1} of the piecewise-linear objective."""
    out = np.empty_like(t)
    for idx, ti in np.ndenumerate(t):
        if ti >= SUP_OF_DERIVATIVE[divergence]:
            out[idx] = np.inf
        elif divergence == "tv":
            out[idx] = max(-0.5, ti)  # u = 0 gives -f(0) = -1/2, u = 1 gives t
        else:
            s = optimize.brentq(lambda s: ref_derivative(np.exp(s), divergence) - ti, -40.0, 40.0, xtol=1e-15,
                                rtol=4 * np.finfo(float).eps)
            u = np.exp(s)
            out[idx] = u * ti - GENERATORS[divergence](u)
    return out


def ref_f_divergence(p, q, divergence):
    with np.errstate(divide="ignore"):
        return {"kl": lambda: special.rel_entr(p, q).sum(-1), "reverse_kl": lambda: special.rel_entr(q, p).sum(-1),
                "js": lambda: 2 * jensenshannon(p, q, axis=-1) ** 2, "tv": lambda: 0.5 * np.abs(p - q).sum(-1),
                "pearson": lambda: ((p - q) ** 2 / q).sum(-1),
                "hellinger": lambda: ((np.sqrt(p) - np.sqrt(q)) ** 2).sum(-1)}[divergence]()


# Input makers ------------------------------------------------------------------------------------------
T_RANGES = {"kl": (-2, 2), "reverse_kl": (-3, -0.2), "js": (-2, 0.6), "tv": (-0.45, 0.45), "pearson": (-1.9, 3),
            "hellinger": (-2, 0.8)}  # inside dom f*, away from its edge


def _t(rng, divergence, *shape):
    return uniform(rng, *shape, low=T_RANGES[divergence][0], high=T_RANGES[divergence][1])


def _conjugate_inputs(divergence):
    def make(rng):
        t = _t(rng, divergence, B, K)
        if np.isfinite(SUP_OF_DERIVATIVE[divergence]):
            t[-1, -1] = SUP_OF_DERIVATIVE[divergence] + 0.3  # one point outside dom f*: +inf, zero gradient
        return {"t": t}
    return make


def _distributions(rng):
    return {"p": rng.dirichlet(np.ones(K), B), "q": rng.dirichlet(np.ones(K), B)}


def _cases(divergence):
    k, static = divergence, {"divergence": divergence}
    return (
        FunctionCase(f"f_divergence/f_generator/{k}", "f_generator", lambda r: {"u": uniform(r, B, K, low=0.05, high=4)},
                     grad_wrt=("u",), static=static, reference=lambda u, divergence: GENERATORS[divergence](u)),
        FunctionCase(f"f_divergence/f_derivative/{k}", "f_derivative",
                     lambda r: {"u": uniform(r, B, K, low=0.05, high=4)}, grad_wrt=("u",), static=static,
                     reference=ref_derivative),
        FunctionCase(f"f_divergence/f_conjugate/{k}", "f_conjugate", _conjugate_inputs(k), grad_wrt=("t",),
                     static=static, reference=ref_conjugate),
        FunctionCase(f"f_divergence/output_activation/{k}", "output_activation",
                     lambda r: {"v": gaussian(r, B, K, scale=2.0)}, grad_wrt=("v",), static=static,
                     reference=lambda v, divergence: ACTIVATIONS[divergence](v)),
        FunctionCase(f"f_divergence/conjugate_at_activation/{k}", "conjugate_at_activation",
                     lambda r: {"v": gaussian(r, B, K, scale=2.0)}, grad_wrt=("v",), static=static,
                     reference=lambda v, divergence: CONJUGATES[divergence](ACTIVATIONS[divergence](v))),
        FunctionCase(f"f_divergence/variational_objective/{k}", "variational_objective",
                     lambda r: {"v_p": gaussian(r, 64), "v_q": gaussian(r, 48)}, grad_wrt=("v_p", "v_q"), static=static,
                     reference=lambda v_p, v_q, divergence: (np.mean(ACTIVATIONS[divergence](v_p)) - np.mean(
                         CONJUGATES[divergence](ACTIVATIONS[divergence](v_q))))),
        FunctionCase(f"f_divergence/f_divergence_discrete/{k}", "f_divergence_discrete", _distributions,
                     grad_wrt=("p", "q"), static=static, reference=ref_f_divergence),
        FunctionCase(f"f_divergence/variational_bound_discrete/{k}", "variational_bound_discrete",
                     lambda r: {**_distributions(r), "t": _t(r, k, B, K)}, grad_wrt=("p", "q", "t"), static=static,
                     reference=lambda p, q, t, divergence: np.sum(p * t - q * ref_conjugate(t, divergence), -1)),
    )


CRITIC = {"shape": (1, 8, 8), "channels": (4, 8), "fc": 16}  # the GAN's, the WGAN's and the f-GAN's discriminator
GENERATOR = {"latent_dim": 3, "shape": (1, 8, 8), "channels": (4, 8), "fc": 16}  # the DCGAN's generator

CASES = tuple(case for divergence in DIVERGENCES for case in _cases(divergence)) + (
    ModuleCase("f_divergence/conv_critic", "ConvCritic", CRITIC,
               lambda r: {"x": uniform(r, 3, 1, 8, 8, dtype="float32")}, grad_wrt=("x",), image_inputs=("x",)),
    ModuleCase("f_divergence/conv_critic/no_norm", "ConvCritic", {**CRITIC, "norm": False},  # the WGAN's critic
               lambda r: {"x": uniform(r, 3, 1, 8, 8, dtype="float32")}, grad_wrt=("x",), image_inputs=("x",)),
    # the logit and the features a projection discriminator reads (the conditional DCGAN's, ``gan``)
    ModuleCase("f_divergence/conv_critic/logit_and_features", "ConvCritic", CRITIC,
               lambda r: {"x": uniform(r, 3, 1, 8, 8, dtype="float32")}, method="logit_and_features", grad_wrt=("x",),
               image_inputs=("x",)),
    # batch statistics (training) and the converted running statistics (sampling from a trained generator)
    ModuleCase("f_divergence/conv_generator", "ConvGenerator", GENERATOR,
               lambda r: {"z": gaussian(r, 5, 3, dtype="float32")}, grad_wrt=("z",), image_outputs=("<root>",), train=True),
    ModuleCase("f_divergence/conv_generator/eval", "ConvGenerator", GENERATOR,
               lambda r: {"z": gaussian(r, 5, 3, dtype="float32")}, grad_wrt=("z",), image_outputs=("<root>",), train=False),
)
