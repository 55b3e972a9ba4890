"""The GAN's losses and closed forms (Goodfellow et al. 2014, eq. 1, Proposition 1, Theorem 1, sec. 3), and the
stability remedies' math: spectral normalisation (Miyato et al. 2018), the minibatch standard deviation (Karras et
al. 2018), the unrolled discriminator (Metz et al. 2017) and packing (PacGAN, Lin et al. 2018).

Twins of the functions in ``theory_jax/gan.py``, same names and arguments. The losses take the discriminator's
logits, so that log D = -softplus(-logit) and log(1 - D) = -softplus(logit) stay finite for any logit.
"""

from __future__ import annotations

import math

import torch


def softplus(x):
    """log(1 + e^x), exact for every x: ``torch.logaddexp(x, 0)``. ``softplus`` returns x itself above its
    threshold (20), an error of up to e^-20 ~ 2e-9, far above float64's tolerance. (...) -> (...)."""
    return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))


# 1. The losses, on the discriminator's logits ------------------------------------------------------------------
def discriminator_loss(real_logits, fake_logits):
    """-V(D, G) estimated on a batch: -mean log D(x_real) - mean log(1 - D(x_fake)) (Goodfellow et al. 2014, eq. 1,
    negated to be minimised), D = sigmoid(logit); binary cross-entropy with labels 1 for real and 0 for fake.
    real_logits: (B,) the discriminator's logits on real samples; fake_logits: (B',) on generated ones -> ()."""
    return torch.mean(softplus(-real_logits)) + torch.mean(softplus(fake_logits))


def generator_loss_saturating(fake_logits):
    """The minimax generator loss, mean log(1 - D(G(z))) (eq. 1; minimised). Its gradient -D dlogit vanishes where
    D rejects the fakes. fake_logits: (B,) -> ()."""
    return -torch.mean(softplus(fake_logits))


def generator_loss_nonsaturating(fake_logits):
    """The non-saturating generator loss, -mean log D(G(z)) with D = sigmoid(logit) (Goodfellow et al. 2014, sec. 3):
    its gradient -(1 - D) dlogit does not vanish where D(G(z)) is near 0. fake_logits: (B,) the discriminator's
    logits on generated samples -> ()."""
    return torch.mean(softplus(-fake_logits))


def optimal_logit(log_p, log_q):
    """The logit of D*(x) = p(x) / (p(x) + q(x)) (Proposition 1): the log density ratio. (...) -> (...)."""
    return log_p - log_q


# 2. Closed forms -------------------------------------------------------------------------------------------------
def value_discrete(d, p, q):
    """V(D, G) for distributions on K points: sum_k p_k log d_k + q_k log(1 - d_k). d, p, q: (..., K) -> (...)."""
    return torch.sum(p * torch.log(d) + q * torch.log1p(-d), dim=-1)


def js_discrete(p, q):
    """JS(p || q) = KL(p || m)/2 + KL(q || m)/2 with m = (p + q)/2, in nats. p, q: (..., K) -> (...)."""
    m = (p + q) / 2
    return 0.5 * torch.sum(p * torch.log(p / m), -1) + 0.5 * torch.sum(q * torch.log(q / m), -1)


def gauss_log_pdf(x, mean, std):
    """log N(x; mean, std^2). (...) -> (...)."""
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(torch.as_tensor(std, dtype=x.dtype)) - 0.5 * math.log(2 * math.pi)


# Spectral normalisation (Miyato et al. 2018) ------------------------------------------------------------------
def normalize(x, eps: float = 1e-12):
    """x / max(||x||, eps): a vector (n,) scaled to unit length (``torch.nn.functional.normalize``)."""
    return torch.nn.functional.normalize(x, dim=0, eps=eps)


def power_iteration(w, u, v, n_iter: int = 1, eps: float = 1e-12):
    """(u, v) after n_iter steps of u = W v / ||W v||, v = W^T u / ||W^T u|| (Miyato et al. 2018, Algorithm 1,
    started from v as torch's ``spectral_norm`` does): the top left and right singular vectors of w (out, in) in the
    limit. n_iter = 0 returns (u, v) as they are."""
    for _ in range(n_iter):
        u = normalize(w @ v, eps)
        v = normalize(w.T @ u, eps)
    return u, v


def spectral_normalize(w, u, v, n_iter: int = 1, eps: float = 1e-12):
    """(w / sigma, u, v): the weight divided by its largest singular value estimated as sigma = u^T W v from the
    ``power_iteration``'s vectors, which are constants to the gradient (as in ``torch.nn.utils.parametrizations
    .spectral_norm``). w: (out, ...) (a conv kernel is read as (out, in * kh * kw)); u: (out,), v: (in * kh * kw,)."""
    matrix = w.reshape(w.shape[0], -1)
    with torch.no_grad():
        u, v = power_iteration(matrix, u, v, n_iter, eps)
    sigma = u @ (matrix @ v)
    return w / sigma, u, v


# Minibatch standard deviation (Karras et al. 2018, sec. 3) ------------------------------------------------------
def minibatch_std(h, eps: float = 1e-8):
    """h with one feature appended, the same for every example: the standard deviation of each feature over the
    minibatch, sqrt(Var_batch + eps), averaged over the features (Karras et al. 2018, sec. 3). A batch of collapsed
    samples shows a value near 0 that the discriminator's next layer can read. h: (B, F) a batch of the
    discriminator's features; eps: a float added to each variance -> (B, F + 1)."""
    std = torch.sqrt(torch.var(h, dim=0, correction=0) + eps).mean()
    return torch.cat([h, std.expand(h.shape[0], 1)], dim=1)


# Maxout units (Goodfellow et al. 2013), PacGAN's toy discriminator's -----------------------------------------------
def maxout(h, pieces: int):
    """Maxout units (Goodfellow et al. 2013, eq. 1): unit i is the largest of its ``pieces`` linear pieces,
    h_i = max_j z_(i pieces + j), the pieces of a unit consecutive (as Blocks' ``Maxout``, which PacGAN's code uses).
    h: (B, units * pieces) a linear layer's output -> (B, units)."""
    return torch.amax(h.unflatten(-1, (-1, pieces)), dim=-1)


# Progressive growing (Karras et al. 2018, sec. 2 and 4) ------------------------------------------------------------
def pixel_norm(x, axis: int = 1, eps: float = 1e-8):
    """Each example's feature vector at each pixel scaled to unit root mean square over the channels (Karras et al.
    2018, sec. 4.2, eq. 2): x / sqrt(mean_c x^2 + eps). x: (B, C, H, W) (``axis`` 1) or (B, F) -> the same shape."""
    return x * torch.rsqrt(torch.mean(x**2, dim=axis, keepdim=True) + eps)


def fade_in(alpha, old, new):
    """The blend while a resolution fades in (Karras et al. 2018, Figure 2): (1 - alpha) old + alpha new, the old
    path's output (the lower resolution's, resized) weighted down as alpha goes from 0 to 1. Any matching shapes."""
    return (1 - alpha) * old + alpha * new


def growth(step: int, phase_steps: int, stages: int) -> tuple[int, float]:
    """(stage, alpha) at ``step`` of a progressive run: the lowest resolution alone for ``phase_steps`` steps, then
    for each of the ``stages`` - 1 doublings a fade-in (alpha rising linearly from 0 to 1) and as long at that
    resolution alone (alpha 1); after the last phase, the last stage at alpha 1."""
    phase = min(step // phase_steps, 2 * stages - 2)
    stage = (phase + 1) // 2
    alpha = (step - phase * phase_steps) / phase_steps if phase % 2 else 1.0
    return stage, min(alpha, 1.0)


# Packing (PacGAN, Lin et al. 2018, sec. 3) ------------------------------------------------------------------------
def pack(x, m: int, axis: int = 1):
    """The discriminator's input under packing: each row the m consecutive examples x[i m], ..., x[i m + m - 1]
    concatenated along ``axis`` of x (a vector's features, an image's channels: 1 in (B, C, H, W), -1 in
    (B, H, W, C)), so that it judges m samples at once, a draw of the product law P^m against Q^m.
    x: (B, *example), B a multiple of m -> (B / m, *example with the axis m times as long)."""
    if x.shape[0] % m:
        raise ValueError(f"packing {m} examples at a time needs a multiple of {m} of them, got {x.shape[0]}")
    a = axis % x.ndim
    groups = torch.movedim(x.reshape(x.shape[0] // m, m, *x.shape[1:]), 1, a)  # m just before the packed axis
    return groups.reshape(*groups.shape[:a], m * x.shape[a], *groups.shape[a + 2:])


# The unrolled discriminator (Metz et al. 2017, eqs. 4-6) ---------------------------------------------------------
def unroll(loss, params: dict, steps: int, lr: float) -> dict:
    """theta_{k+1} = theta_k - lr grad loss(theta_k), ``steps`` times from ``params`` (a dict of tensors), every step
    kept in the graph (eq. 4), so that a loss at the last parameters differentiates through all of them (eq. 6)."""
    with torch.enable_grad():
        for _ in range(steps):
            grads = torch.autograd.grad(loss(params), list(params.values()), create_graph=True)
            params = {name: p - lr * g for (name, p), g in zip(params.items(), grads, strict=True)}
    return params


def _safe_sqrt(v):
    """sqrt(v) for v >= 0, with the gradient 0 rather than 0 * inf = nan where v = 0 (a moment still zero)."""
    positive = v > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, v, torch.ones_like(v))), torch.zeros_like(v))


def adam_unroll(loss, params: dict, m: dict, v: dict, t: int, steps: int, lr: float, betas=(0.9, 0.999),
                eps: float = 1e-8, weight_decay: float = 0.0) -> dict:
    """``steps`` AdamW steps (Kingma & Ba 2015, Algorithm 1; Loshchilov & Hutter 2019, Algorithm 2) from ``params``
    and their moments m, v after t steps taken, every step kept in the graph: eq. 4 with the discriminator's own
    optimizer as the update, as Metz et al.'s code unrolls it (Adam's slots carried through the look-ahead). Step k:

        g = grad loss(theta),  m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2
        theta <- theta (1 - lr wd) - lr (m / (1 - b1^(t+k))) / (sqrt(v / (1 - b2^(t+k))) + eps)

    ``m``, ``v``: dicts of tensors shaped as ``params`` (zeros before the first step)."""
    b1, b2 = betas
    with torch.enable_grad():
        for k in range(1, steps + 1):
            grads = torch.autograd.grad(loss(params), list(params.values()), create_graph=True)
            m = {n: b1 * m[n] + (1 - b1) * g for n, g in zip(params, grads, strict=True)}
            v = {n: b2 * v[n] + (1 - b2) * g * g for n, g in zip(params, grads, strict=True)}
            c1, c2 = 1 - b1 ** (t + k), 1 - b2 ** (t + k)
            params = {n: p * (1 - lr * weight_decay) - lr * (m[n] / c1) / (_safe_sqrt(v[n] / c2) + eps)
                      for n, p in params.items()}
    return params


def unrolled_generator_loss(fake, real, w, b, steps: int = 1, lr: float = 0.1):
    """The non-saturating generator loss against a logistic discriminator, logit(x) = x w + b, after ``steps``
    gradient steps of ``discriminator_loss`` on (real, fake) from (w, b), differentiated through them: what the
    generator of an unrolled GAN minimises, on the smallest discriminator. fake: (B, D) G(z), real: (B', D),
    w: (D,), b: () -> ()."""
    def d_loss(p):
        return discriminator_loss(real @ p["w"] + p["b"], fake @ p["w"] + p["b"])

    start = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in (("w", w), ("b", b))}
    p = unroll(d_loss, start, steps, lr)
    return generator_loss_nonsaturating(fake @ p["w"] + p["b"])


def adam_unrolled_generator_loss(fake, real, w, b, m_w, v_w, m_b, v_b, t: int = 3, steps: int = 1,
                                 lr: float = 0.1, betas=(0.5, 0.999)):
    """``unrolled_generator_loss`` with the look-ahead taking Adam's steps (``adam_unroll``) from the moments
    (m_w, v_w) of w and (m_b, v_b) of b after t steps, as Metz et al.'s code unrolls the discriminator's own
    optimizer. fake: (B, D), real: (B', D), w, m_w, v_w: (D,), b, m_b, v_b: () -> ()."""
    def d_loss(p):
        return discriminator_loss(real @ p["w"] + p["b"], fake @ p["w"] + p["b"])

    start = {k: x if x.requires_grad else x.detach().requires_grad_() for k, x in (("w", w), ("b", b))}
    p = adam_unroll(d_loss, start, {"w": m_w, "b": m_b}, {"w": v_w, "b": v_b}, t, steps, lr, betas)
    return generator_loss_nonsaturating(fake @ p["w"] + p["b"])
