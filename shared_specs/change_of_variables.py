"""Spec cases for ``change_of_variables``: Box-Muller, inverse-CDF samplers, the elementwise flow, LU mixing and
the composed flow as float64 functions, and the flow as a float32 module under the weight converter (forward
and log-likelihood, with gradients w.r.t. every weight).

Third witnesses, none of which reuses the twins' formulas: SciPy's distributions (chi^2, exponential, logistic,
normal quantiles and log-densities), complex arithmetic for the polar maps, Brent's root finder for the
inverses, and NumPy's ``slogdet`` of the assembled LU matrix for the mixing log-det.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special, stats

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

B, D, K, LAYERS = 5, 2, 4, 3


# Independent references ---------------------------------------------------------------------------------
def ref_box_muller(u):
    """r^2 = chi^2_2 quantile at 1 - u1 (= -2 ln u1), z1 + i z2 = r exp(2 pi i u2)."""
    w = np.sqrt(stats.chi2(2).isf(u[..., 0])) * np.exp(2j * np.pi * u[..., 1])
    return np.stack([w.real, w.imag], axis=-1)


def ref_box_muller_inverse(z):
    """u1 = chi^2_2 survival function at |z|^2 (= exp(-|z|^2 / 2)), u2 = arg(z1 + i z2) / 2 pi mod 1."""
    w = z[..., 0] + 1j * z[..., 1]
    return np.stack([stats.chi2(2).sf(np.abs(w) ** 2), np.mod(np.angle(w) / (2 * np.pi), 1.0)], axis=-1)


def ref_box_muller_log_det(u):
    """Eq. 1 read backwards: |det dz/du| = p_U / p_Z(z) = 1 / N(z; 0, I), so log|det| = -log N(z(u); 0, I)."""
    return -stats.norm.logpdf(ref_box_muller(u)).sum(-1)


def _mixture_logs(x, logits, means, log_scales):
    """SciPy's per-component logistic logcdf, logsf and logpdf, weighted by log softmax and summed (logsumexp)."""
    log_pi = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    comp = stats.logistic(means, np.exp(log_scales))
    xk = x[..., None]
    return tuple(special.logsumexp(log_pi + f(xk), axis=-1) for f in (comp.logcdf, comp.logsf, comp.logpdf))


def ref_logistic_mixture_log_cdf(x, logits, means, log_scales):
    return _mixture_logs(x, logits, means, log_scales)[:2]


def ref_logistic_mixture_log_pdf(x, logits, means, log_scales):
    return _mixture_logs(x, logits, means, log_scales)[2]


def ref_gaussianize(x, logits, means, log_scales):
    """z = norm.ppf(F) below the median, norm.isf(1 - F) above it; log dz/dx = log f(x) - norm.logpdf(z)."""
    log_f, log_sf, log_pdf = _mixture_logs(x, logits, means, log_scales)
    z = np.where(log_f < log_sf, stats.norm.ppf(np.exp(log_f)), stats.norm.isf(np.exp(log_sf)))
    return z, (log_pdf - stats.norm.logpdf(z)).sum(-1)


def ref_gaussianize_inverse(z, logits, means, log_scales):
    """Brent's method on each coordinate's increasing map x -> z_i(x) (the SciPy reference forward)."""
    out = np.empty_like(z)
    for idx in np.ndindex(*z.shape):
        i = idx[-1]
        p = (logits[i:i + 1], means[i:i + 1], log_scales[i:i + 1])

        def gap(x, i=i, p=p, target=z[idx]):
            return ref_gaussianize(np.array([[x]]), *p)[0][0, 0] - target
        out[idx] = optimize.brentq(gap, -1e3, 1e3, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    return out


def ref_lu_matrix(lower, upper, log_diag):
    d = log_diag.shape[-1]
    return (np.tril(lower, -1) + np.eye(d)) @ (np.triu(upper, 1) + np.diag(np.exp(log_diag)))


def ref_lu_linear(x, lower, upper, log_diag, shift):
    w = ref_lu_matrix(lower, upper, log_diag)
    return x @ w.T + shift, np.full(x.shape[:-1], np.linalg.slogdet(w)[1])


def ref_lu_linear_inverse(y, lower, upper, log_diag, shift):
    return np.linalg.solve(ref_lu_matrix(lower, upper, log_diag), (y - shift).T).T


def ref_flow_forward(x, logits, means, log_scales, lower, upper, log_diag, shift):
    """The layers by the references above, log-dets summed (eq. 2)."""
    z, log_det = ref_gaussianize(x, logits[0], means[0], log_scales[0])
    for i in range(len(lower)):
        z, mix = ref_lu_linear(z, lower[i], upper[i], log_diag[i], shift[i])
        z, elem = ref_gaussianize(z, logits[i + 1], means[i + 1], log_scales[i + 1])
        log_det = log_det + mix + elem
    return z, log_det


def ref_flow_inverse(z, logits, means, log_scales, lower, upper, log_diag, shift):
    x = z
    for i in reversed(range(len(lower))):
        x = ref_gaussianize_inverse(x, logits[i + 1], means[i + 1], log_scales[i + 1])
        x = ref_lu_linear_inverse(x, lower[i], upper[i], log_diag[i], shift[i])
    return ref_gaussianize_inverse(x, logits[0], means[0], log_scales[0])


def ref_flow_log_prob(x, **params):
    z, log_det = ref_flow_forward(x, **params)
    return stats.norm.logpdf(z).sum(-1) + log_det


# Input makers --------------------------------------------------------------------------------------------
def _mixture(r, d=D, k=K):
    return {"logits": gaussian(r, d, k), "means": gaussian(r, d, k, scale=1.5),
            "log_scales": gaussian(r, d, k, scale=0.3) - 0.5}


def _lu(r, d=D):
    return {"lower": gaussian(r, d, d, scale=0.5), "upper": gaussian(r, d, d, scale=0.5),
            "log_diag": gaussian(r, d, scale=0.3), "shift": gaussian(r, d, scale=0.3)}


def _flow(r, layers=LAYERS, d=D, k=K):
    return {"logits": gaussian(r, layers, d, k), "means": gaussian(r, layers, d, k, scale=1.5),
            "log_scales": gaussian(r, layers, d, k, scale=0.3) - 0.5,
            "lower": gaussian(r, layers - 1, d, d, scale=0.5), "upper": gaussian(r, layers - 1, d, d, scale=0.5),
            "log_diag": gaussian(r, layers - 1, d, scale=0.3), "shift": gaussian(r, layers - 1, d, scale=0.3)}


def _open_uniform(r, *shape, low=1e-12):
    """U(0, 1) with both tails: the spread of u covers 1e-12 .. 1 - 1e-12 besides the bulk."""
    u = uniform(r, *shape)
    u.flat[:2] = (low, 1 - low)
    return u


FLOW_MODULE = {"dim": D, "components": K, "layers": LAYERS}
FLOW_PARAMS = ("logits", "means", "log_scales", "lower", "upper", "log_diag", "shift")

CASES = (
    # Box-Muller ------------------------------------------------------------------------------------------
    FunctionCase("change_of_variables/box_muller", "box_muller",
                 lambda r: {"u": np.stack([1.0 - uniform(r, B, 3), uniform(r, B, 3)], axis=-1)},
                 grad_wrt=("u",), reference=ref_box_muller),
    FunctionCase("change_of_variables/box_muller_inverse", "box_muller_inverse",
                 lambda r: {"z": gaussian(r, B, 3, 2, scale=1.5)}, grad_wrt=("z",), reference=ref_box_muller_inverse),
    FunctionCase("change_of_variables/box_muller_log_det", "box_muller_log_det",
                 lambda r: {"u": np.stack([1.0 - uniform(r, B), uniform(r, B)], axis=-1)},
                 grad_wrt=("u",), reference=ref_box_muller_log_det),
    # inverse-CDF samplers -----------------------------------------------------------------------------------
    FunctionCase("change_of_variables/exponential_icdf", "exponential_icdf",
                 lambda r: {"u": _open_uniform(r, B, 4), "rate": np.asarray(0.5 + r.uniform())},
                 grad_wrt=("u", "rate"), reference=lambda u, rate: stats.expon(scale=1 / rate).ppf(u)),
    FunctionCase("change_of_variables/logistic_icdf", "logistic_icdf",
                 lambda r: {"u": _open_uniform(r, B, 4), "loc": gaussian(r, 4), "scale": np.exp(gaussian(r, 4, scale=0.3))},
                 grad_wrt=("u", "loc", "scale"), reference=lambda u, loc, scale: stats.logistic(loc, scale).ppf(u)),
    FunctionCase("change_of_variables/gaussian_icdf", "gaussian_icdf",
                 lambda r: {"u": _open_uniform(r, B, 4), "mean": gaussian(r, 4), "std": np.exp(gaussian(r, 4, scale=0.3))},
                 grad_wrt=("u", "mean", "std"), reference=lambda u, mean, std: stats.norm(mean, std).ppf(u)),
    # the elementwise flow -------------------------------------------------------------------------------------
    FunctionCase("change_of_variables/logistic_mixture_log_cdf", "logistic_mixture_log_cdf",
                 lambda r: {"x": gaussian(r, B, D, scale=3.0), **_mixture(r)},
                 grad_wrt=("x", "logits", "means", "log_scales"), reference=ref_logistic_mixture_log_cdf),
    FunctionCase("change_of_variables/logistic_mixture_log_pdf", "logistic_mixture_log_pdf",
                 lambda r: {"x": gaussian(r, B, D, scale=3.0), **_mixture(r)},
                 grad_wrt=("x", "logits", "means", "log_scales"), reference=ref_logistic_mixture_log_pdf),
    FunctionCase("change_of_variables/gaussianize", "gaussianize",
                 lambda r: {"x": gaussian(r, B, D, scale=3.0), **_mixture(r)},
                 grad_wrt=("x", "logits", "means", "log_scales"), reference=ref_gaussianize),
    FunctionCase("change_of_variables/gaussianize/far-tails", "gaussianize",  # F or 1 - F down to 1e-30
                 lambda r: {"x": np.array([[-40.0, 30.0], [25.0, -20.0]]), **_mixture(r)},
                 grad_wrt=("x", "means"), reference=ref_gaussianize),
    FunctionCase("change_of_variables/gaussianize_inverse", "gaussianize_inverse",
                 lambda r: {"z": gaussian(r, B, D, scale=1.5), **_mixture(r)},
                 grad_wrt=("z", "logits", "means", "log_scales"), reference=ref_gaussianize_inverse),
    # LU mixing and the composed flow --------------------------------------------------------------------------
    FunctionCase("change_of_variables/lu_linear", "lu_linear", lambda r: {"x": gaussian(r, B, D), **_lu(r)},
                 grad_wrt=("x", "lower", "upper", "log_diag", "shift"), reference=ref_lu_linear),
    FunctionCase("change_of_variables/lu_linear_inverse", "lu_linear_inverse",
                 lambda r: {"y": gaussian(r, B, D), **_lu(r)},
                 grad_wrt=("y", "lower", "upper", "log_diag", "shift"), reference=ref_lu_linear_inverse),
    FunctionCase("change_of_variables/flow_forward", "flow_forward",
                 lambda r: {"x": gaussian(r, B, D, scale=2.0), **_flow(r)},
                 grad_wrt=("x", *FLOW_PARAMS), reference=ref_flow_forward),
    FunctionCase("change_of_variables/flow_inverse", "flow_inverse", lambda r: {"z": gaussian(r, B, D), **_flow(r)},
                 grad_wrt=("z", *FLOW_PARAMS), reference=ref_flow_inverse),
    FunctionCase("change_of_variables/flow_log_prob", "flow_log_prob",
                 lambda r: {"x": gaussian(r, B, D, scale=2.0), **_flow(r)},
                 grad_wrt=("x", *FLOW_PARAMS), reference=ref_flow_log_prob),
    # the flow as a module (float32, weights through the converter) ----------------------------------------------
    ModuleCase("change_of_variables/flow_module", "GaussianizationFlow", FLOW_MODULE,
               lambda r: {"x": gaussian(r, B, D, scale=2.0, dtype="float32")}, grad_wrt=("x",)),
    ModuleCase("change_of_variables/flow_module_log_prob", "GaussianizationFlow", FLOW_MODULE,
               lambda r: {"x": gaussian(r, B, D, scale=2.0, dtype="float32")}, method="log_prob", level="loglik",
               grad_wrt=("x",)),
)
