"""Spec cases for ``coupling_flows``: masks, additive and affine coupling (checkerboard and channel masks, images and
vectors, forward and inverse, with the spec's one-layer conditioner or any conditioner output h), actnorm, the
invertible 1x1 convolution and its LU form, squeeze, the logit transform, the base log-density and bits/dim, all
float64 functions with gradients.

Third witnesses, none of which reuses the twins' formulas: masks and squeeze by index loops, the 3x3 convolution as
a sum of nine shifted products of a zero-padded array, the coupling by splitting the coordinates into kept and
changed sets, NumPy's ``slogdet``, ``solve`` and ``kron`` for the 1x1 convolution (the matrix of the whole map is
kron(W, I_HW)), SciPy's ``logit``/``expit`` and ``norm.logpdf``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

B = 3


# Independent references ---------------------------------------------------------------------------------------
def ref_checkerboard(x, parity=0):
    h, w = x.shape[-2:]
    out = np.zeros((1, 1, h, w))
    for i, j in np.ndindex(h, w):
        out[0, 0, i, j] = 1.0 if (i + j + parity) % 2 == 0 else 0.0
    return out


def ref_channel_mask(x, parity=0):
    c = x.shape[1]
    keep = np.array([(i < c // 2) == (parity == 0) for i in range(c)], dtype=float)
    return keep.reshape(1, c, *([1] * (x.ndim - 2)))


def ref_conv3x3(x, weight, bias):
    """Cross-correlation with zero padding 1: the sum over the nine kernel offsets of shifted products."""
    if x.ndim == 2:
        return np.einsum("bd,od->bo", x, weight) + bias
    h, w = x.shape[-2:]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((x.shape[0], weight.shape[0], h, w)) + bias[None, :, None, None]
    for di, dj in np.ndindex(3, 3):
        out += np.einsum("oc,bchw->bohw", weight[:, :, di, dj], padded[:, :, di:di + h, dj:dj + w])
    return out


def _kept_changed(mask, shape):
    keep = np.broadcast_to(mask, shape).astype(bool)
    return keep, ~keep


def ref_coupling_transform(x, mask, h, kind="affine"):
    """Kept coordinates copied; changed ones x e^{tanh h_s} + t (affine) or x + t (additive); log-det summed over
    the changed set only."""
    keep, change = _kept_changed(mask, x.shape)
    c = x.shape[1]
    y, log_det = x.copy(), np.zeros(x.shape[0])
    if kind == "additive":
        y[change] = x[change] + h[change]
        return y, log_det
    s, t = np.tanh(h[:, :c]), h[:, c:]
    y[change] = x[change] * np.exp(s[change]) + t[change]
    for n in range(x.shape[0]):
        log_det[n] = s[n][change[n]].sum()
    return y, log_det


def ref_coupling_transform_inverse(y, mask, h, kind="affine"):
    keep, change = _kept_changed(mask, y.shape)
    c = y.shape[1]
    x, log_det = y.copy(), np.zeros(y.shape[0])
    if kind == "additive":
        x[change] = y[change] - h[change]
        return x, log_det
    s, t = np.tanh(h[:, :c]), h[:, c:]
    x[change] = (y[change] - t[change]) / np.exp(s[change])
    for n in range(y.shape[0]):
        log_det[n] = -s[n][change[n]].sum()
    return x, log_det


def ref_coupling_forward(x, mask, weight, bias, kind="affine"):
    return ref_coupling_transform(x, mask, ref_conv3x3(np.where(np.broadcast_to(mask, x.shape) > 0, x, 0.0),
                                                       weight, bias), kind)


def ref_coupling_inverse(y, mask, weight, bias, kind="affine"):
    return ref_coupling_transform_inverse(y, mask, ref_conv3x3(np.where(np.broadcast_to(mask, y.shape) > 0, y, 0.0),
                                                               weight, bias), kind)


def _pixels(x):
    return int(np.prod(x.shape[2:])) if x.ndim > 2 else 1


def ref_actnorm_forward(x, log_scale, bias):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = x * np.exp(log_scale).reshape(shape) + bias.reshape(shape)
    return y, np.full(x.shape[0], np.log(np.prod(np.exp(log_scale))) * _pixels(x))


def ref_actnorm_inverse(y, log_scale, bias):
    shape = (1, -1) + (1,) * (y.ndim - 2)
    return (y - bias.reshape(shape)) / np.exp(log_scale).reshape(shape), np.full(y.shape[0], -log_scale.sum() * _pixels(y))


def _as_matrix_map(weight, x):
    """The whole 1x1 convolution as one (C HW) x (C HW) matrix, kron(W, I_HW), acting on x flattened per example."""
    return np.kron(weight, np.eye(_pixels(x)))


def ref_invconv_forward(x, weight):
    big = _as_matrix_map(weight, x)
    y = (x.reshape(x.shape[0], -1) @ big.T).reshape(x.shape)
    return y, np.full(x.shape[0], np.linalg.slogdet(big)[1])


def ref_invconv_inverse(y, weight):
    big = _as_matrix_map(weight, y)
    x = np.linalg.solve(big, y.reshape(y.shape[0], -1).T).T.reshape(y.shape)
    return x, np.full(y.shape[0], -np.linalg.slogdet(big)[1])


def ref_invconv_lu_weight(permutation, lower, upper, log_diag, sign):
    c = lower.shape[0]
    low = np.eye(c) + np.tril(lower, -1)
    up = np.triu(upper, 1) + np.diag(sign * np.exp(log_diag))
    w = permutation @ low @ up
    return w, np.linalg.slogdet(w)[1]


def ref_squeeze(x):
    b, c, h, w = x.shape
    out = np.zeros((b, 4 * c, h // 2, w // 2))
    for ch, i, j, di, dj in np.ndindex(c, h // 2, w // 2, 2, 2):
        out[:, 4 * ch + 2 * di + dj, i, j] = x[:, ch, 2 * i + di, 2 * j + dj]
    return out


def ref_unsqueeze(y):
    b, c4, h, w = y.shape
    out = np.zeros((b, c4 // 4, 2 * h, 2 * w))
    for ch, i, j, di, dj in np.ndindex(c4 // 4, h, w, 2, 2):
        out[:, ch, 2 * i + di, 2 * j + dj] = y[:, 4 * ch + 2 * di + dj, i, j]
    return out


def ref_logit_transform(x, alpha=0.05):
    p = alpha + (1 - 2 * alpha) * x
    grad = (1 - 2 * alpha) / (special.expit(special.logit(p)) * special.expit(-special.logit(p)))
    return special.logit(p), np.log(grad).reshape(x.shape[0], -1).sum(1)


def ref_logit_inverse(y, alpha=0.05):
    x = (special.expit(y) - alpha) / (1 - 2 * alpha)
    return x, -ref_logit_transform(x, alpha)[1]


def ref_standard_normal_log_prob(z):
    return stats.norm.logpdf(z).reshape(z.shape[0], -1).sum(1)


def ref_bits_per_dim(log_prob, num_dims, levels=256):
    """-log2 of the density on the level scale [0, levels)^D, per dimension."""
    return -(log_prob / num_dims - math.log(levels)) / math.log(2)


# Input makers -------------------------------------------------------------------------------------------------
CHECKER, CHANNEL = (2, 4, 4), (4, 3, 3)


def _coupling_inputs(shape, mask_fn, kind, parity=0, name="x"):
    def make(r):
        x = gaussian(r, B, *shape)
        c_out = shape[0] * (2 if kind == "affine" else 1)
        w_shape = (c_out, shape[0], 3, 3) if len(shape) == 3 else (c_out, shape[0])
        return {name: x, "mask": mask_fn(x, parity), "weight": gaussian(r, *w_shape, scale=0.4),
                "bias": gaussian(r, c_out, scale=0.2)}
    return make


def _transform_inputs(shape, kind, name="x"):
    def make(r):
        x = gaussian(r, B, *shape)
        c_out = shape[0] * (2 if kind == "affine" else 1)
        return {name: x, "mask": ref_checkerboard(x, 1), "h": gaussian(r, B, c_out, *shape[1:], scale=1.5)}
    return make


def _lu_inputs(r, c=4):
    return {"permutation": np.eye(c)[r.permutation(c)], "lower": gaussian(r, c, c, scale=0.5),
            "upper": gaussian(r, c, c, scale=0.5), "log_diag": gaussian(r, c, scale=0.3),
            "sign": np.where(r.uniform(size=c) < 0.5, -1.0, 1.0)}


def _weight(r, c=4):
    return np.linalg.qr(gaussian(r, c, c))[0] @ np.diag(np.exp(gaussian(r, c, scale=0.3)))


def _pixels01(r, *shape):
    """Dequantised pixels (k + u) / 256 in [0, 1), the edge levels 0 and 255 included."""
    k = r.integers(0, 256, size=shape).astype("float64")
    k.reshape(-1)[:2] = (0.0, 255.0)
    return (k + uniform(r, *shape)) / 256


def _coupling_cases():
    """Affine coupling with gradients; additive coupling's log-det is the constant 0 (no gradient to compare), so
    ``coupling_forward(kind='additive')`` is checked for its values and NICE's y-only twins for their gradients."""
    cases = []
    for kind in ("affine", "additive"):
        grads = kind == "affine"
        for mask_name, shape, mask_fn in (("checkerboard", CHECKER, ref_checkerboard),
                                          ("channel", CHANNEL, ref_channel_mask)):
            cases.append(FunctionCase(f"coupling_flows/coupling_forward/{kind}-{mask_name}", "coupling_forward",
                                      _coupling_inputs(shape, mask_fn, kind),
                                      grad_wrt=("x", "weight", "bias") if grads else (), static={"kind": kind},
                                      reference=ref_coupling_forward))
            cases.append(FunctionCase(f"coupling_flows/coupling_inverse/{kind}-{mask_name}", "coupling_inverse",
                                      _coupling_inputs(shape, mask_fn, kind, parity=1, name="y"),
                                      grad_wrt=("y", "weight", "bias") if grads else (), static={"kind": kind},
                                      reference=ref_coupling_inverse))
        cases.append(FunctionCase(f"coupling_flows/coupling_forward/{kind}-vectors", "coupling_forward",
                                  _coupling_inputs((5,), ref_channel_mask, kind, parity=1),
                                  grad_wrt=("x", "weight", "bias") if grads else (), static={"kind": kind},
                                  reference=ref_coupling_forward))
        cases.append(FunctionCase(f"coupling_flows/coupling_transform/{kind}", "coupling_transform",
                                  _transform_inputs(CHECKER, kind), grad_wrt=("x", "h") if grads else (),
                                  static={"kind": kind}, reference=ref_coupling_transform))
        cases.append(FunctionCase(f"coupling_flows/coupling_transform_inverse/{kind}", "coupling_transform_inverse",
                                  _transform_inputs(CHECKER, kind, name="y"), grad_wrt=("y", "h") if grads else (),
                                  static={"kind": kind}, reference=ref_coupling_transform_inverse))
    for mask_name, shape, mask_fn in (("checkerboard", CHECKER, ref_checkerboard), ("channel", CHANNEL, ref_channel_mask)):
        cases.append(FunctionCase(f"coupling_flows/additive_coupling_forward/{mask_name}", "additive_coupling_forward",
                                  _coupling_inputs(shape, mask_fn, "additive"), grad_wrt=("x", "weight", "bias"),
                                  reference=lambda **kw: ref_coupling_forward(**kw, kind="additive")[0]))
        cases.append(FunctionCase(f"coupling_flows/additive_coupling_inverse/{mask_name}", "additive_coupling_inverse",
                                  _coupling_inputs(shape, mask_fn, "additive", parity=1, name="y"),
                                  grad_wrt=("y", "weight", "bias"),
                                  reference=lambda **kw: ref_coupling_inverse(**kw, kind="additive")[0]))
    return cases


CASES = (
    # masks ----------------------------------------------------------------------------------------------------
    FunctionCase("coupling_flows/checkerboard_mask/even", "checkerboard_mask", lambda r: {"x": gaussian(r, 2, 3, 5, 4)},
                 static={"parity": 0}, reference=ref_checkerboard),
    FunctionCase("coupling_flows/checkerboard_mask/odd", "checkerboard_mask", lambda r: {"x": gaussian(r, 2, 1, 3, 6)},
                 static={"parity": 1}, reference=ref_checkerboard),
    FunctionCase("coupling_flows/channel_mask/images", "channel_mask", lambda r: {"x": gaussian(r, 2, 6, 3, 3)},
                 static={"parity": 1}, reference=ref_channel_mask),
    FunctionCase("coupling_flows/channel_mask/odd-vectors", "channel_mask", lambda r: {"x": gaussian(r, 4, 5)},
                 static={"parity": 0}, reference=ref_channel_mask),
    FunctionCase("coupling_flows/conditioner", "conditioner",
                 lambda r: {"x": gaussian(r, B, 2, 5, 4), "weight": gaussian(r, 3, 2, 3, 3), "bias": gaussian(r, 3)},
                 grad_wrt=("x", "weight", "bias"), reference=ref_conv3x3),
    # coupling -------------------------------------------------------------------------------------------------
    *_coupling_cases(),
    # Glow ----------------------------------------------------------------------------------------------------
    FunctionCase("coupling_flows/actnorm_forward/images", "actnorm_forward",
                 lambda r: {"x": gaussian(r, B, 4, 3, 5), "log_scale": gaussian(r, 4, scale=0.5), "bias": gaussian(r, 4)},
                 grad_wrt=("x", "log_scale", "bias"), reference=ref_actnorm_forward),
    FunctionCase("coupling_flows/actnorm_forward/vectors", "actnorm_forward",
                 lambda r: {"x": gaussian(r, B, 4), "log_scale": gaussian(r, 4, scale=0.5), "bias": gaussian(r, 4)},
                 grad_wrt=("x", "log_scale", "bias"), reference=ref_actnorm_forward),
    FunctionCase("coupling_flows/actnorm_inverse", "actnorm_inverse",
                 lambda r: {"y": gaussian(r, B, 4, 3, 5), "log_scale": gaussian(r, 4, scale=0.5), "bias": gaussian(r, 4)},
                 grad_wrt=("y", "log_scale", "bias"), reference=ref_actnorm_inverse),
    FunctionCase("coupling_flows/invconv_forward", "invconv_forward",
                 lambda r: {"x": gaussian(r, B, 4, 3, 2), "weight": _weight(r)}, grad_wrt=("x", "weight"),
                 reference=ref_invconv_forward),
    FunctionCase("coupling_flows/invconv_forward/vectors", "invconv_forward",
                 lambda r: {"x": gaussian(r, B, 4), "weight": _weight(r)}, grad_wrt=("x", "weight"),
                 reference=ref_invconv_forward),
    FunctionCase("coupling_flows/invconv_inverse", "invconv_inverse",
                 lambda r: {"y": gaussian(r, B, 4, 3, 2), "weight": _weight(r)}, grad_wrt=("y", "weight"),
                 reference=ref_invconv_inverse),
    FunctionCase("coupling_flows/invconv_lu_weight", "invconv_lu_weight", _lu_inputs,
                 grad_wrt=("lower", "upper", "log_diag"), reference=ref_invconv_lu_weight),
    # squeeze ---------------------------------------------------------------------------------------------------
    FunctionCase("coupling_flows/squeeze", "squeeze", lambda r: {"x": gaussian(r, 2, 3, 4, 6)}, grad_wrt=("x",),
                 reference=ref_squeeze),
    FunctionCase("coupling_flows/unsqueeze", "unsqueeze", lambda r: {"y": gaussian(r, 2, 8, 2, 3)}, grad_wrt=("y",),
                 reference=ref_unsqueeze),
    # dequantised data: logit transform, base density, bits/dim ------------------------------------------------------
    FunctionCase("coupling_flows/logit_transform", "logit_transform", lambda r: {"x": _pixels01(r, B, 1, 4, 4)},
                 grad_wrt=("x",), static={"alpha": 0.05}, reference=ref_logit_transform),
    FunctionCase("coupling_flows/logit_transform/small-alpha", "logit_transform",
                 lambda r: {"x": _pixels01(r, B, 6)}, grad_wrt=("x",), static={"alpha": 1e-6},
                 reference=ref_logit_transform),
    FunctionCase("coupling_flows/logit_inverse", "logit_inverse", lambda r: {"y": gaussian(r, B, 1, 4, 4, scale=2.0)},
                 grad_wrt=("y",), static={"alpha": 0.05}, reference=ref_logit_inverse),
    FunctionCase("coupling_flows/standard_normal_log_prob", "standard_normal_log_prob",
                 lambda r: {"z": gaussian(r, B, 2, 3, 3)}, grad_wrt=("z",), reference=ref_standard_normal_log_prob),
    FunctionCase("coupling_flows/bits_per_dim_from_log_prob", "bits_per_dim_from_log_prob",
                 lambda r: {"log_prob": gaussian(r, 6, scale=300.0)}, grad_wrt=("log_prob",),
                 static={"num_dims": 784, "levels": 256}, reference=ref_bits_per_dim),
    # the image conditioner (float32 module under the weight converter: Conv2d OIHW -> HWIO, NCHW -> NHWC) -------
    ModuleCase("coupling_flows/ConvNet/checkerboard", "ConvNet", {"channels": 2, "out": 4, "hidden": 8, "blocks": 1},
               lambda r: {"x": gaussian(r, B, 2, 6, 6, dtype="float32"),
                          "mask": ref_checkerboard(np.zeros((1, 1, 6, 6)), 1).astype("float32")},
               grad_wrt=("x",), image_inputs=("x", "mask"), image_outputs=("<root>",)),
    ModuleCase("coupling_flows/ConvNet/channel", "ConvNet", {"channels": 4, "out": 8, "hidden": 8, "blocks": 0},
               lambda r: {"x": gaussian(r, B, 4, 5, 5, dtype="float32"),
                          "mask": ref_channel_mask(np.zeros((1, 4, 1, 1))).astype("float32")},
               grad_wrt=("x",), image_inputs=("x", "mask"), image_outputs=("<root>",)),
)
