"""The ``stylegan`` derivation (``python -m theory_jax stylegan``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions of ``theory_jax/stylegan.py``: demodulation, the grouped convolution, the path-length penalty, truncation
and mixing in W, and lazy regularisation. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as a
notebook.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from scipy import signal
from scipy.special import gammaln

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.stylegan import (
    demodulate,
    lazy_adam,
    mixing_ws,
    modulate,
    modulated_conv2d,
    modulated_conv2d_per_example,
    path_length_penalty,
    path_lengths,
    r1_penalty,
    truncate,
    update_w_avg,
)

TITLE = "StyleGAN: modulation and demodulation, the grouped convolution, path length, truncation, lazy regularisation"
LECTURES = "StyleGAN; StyleGAN2"


def _centre_outputs(x, weight, styles, demod: bool):
    """The modulated convolution's output at the centre pixel of each draw, where all k x k taps see that draw alone:
    the draws laid side by side in one image (one example, one group), each k x k block a draw.
    x: (N, I, k, k), weight: (O, I, k, k), styles: (I,) -> (N, O)."""
    n, c_in, k, _ = x.shape
    row = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, c_in, k, n * k)  # (1, I, k, N k)
    out = modulated_conv2d(row, weight, styles[None], demodulate=demod)  # (1, O, k, N k)
    return out[0, :, k // 2, k // 2::k].T


def _chi_mean(dim: int) -> float:
    """E sqrt(chi^2_dim) = sqrt(2) Gamma((dim + 1)/2) / Gamma(dim/2)."""
    return float(np.sqrt(2.0) * np.exp(gammaln((dim + 1) / 2) - gammaln(dim / 2)))


def _section_demodulation(d: Derivation, rng: np.random.Generator) -> None:
    """Demodulation restores unit output variance whatever the styles; modulation alone scales it by them."""
    d.say("A style $s = A(w)$ scales the kernel's input channels, $w'_{ijk} = s_i w_{ijk}$ (eq. 1). For inputs of "
          "unit variance, independent across channels and pixels, an output pixel $y_j = \\sum_{i,k} w'_{ijk} x_{ik}$ "
          "has variance $\\sigma_j^2 = \\sum_{i,k} {w'_{ijk}}^2$ (eq. 2): the style sets the activations' scale, "
          "which StyleGAN had undone by instance normalisation. Demodulation divides each output channel's kernel by "
          "$\\sqrt{\\sigma_j^2 + \\epsilon}$ (eq. 3), so $\\mathrm{Var}\\, y_j = \\sigma_j^2 / (\\sigma_j^2 + "
          "\\epsilon) \\approx 1$ for every style.")
    n, c_in, c_out, k = 20_000, 8, 4, 3
    weight = rng.standard_normal((c_out, c_in, k, k)) / np.sqrt(c_in * k * k)  # the equalised learning rate's scale
    styles = 3.0 * rng.standard_normal(c_in)
    x = rng.standard_normal((n, c_in, k, k))
    sigma2 = np.sum(np.asarray(modulate(weight, styles[None]))[0] ** 2, axis=(1, 2, 3))  # (O,): eq. 2
    d.monte_carlo("With demodulation, $\\mathbb E\\, y_j^2 = \\sigma_j^2 / (\\sigma_j^2 + \\epsilon)$, i.e. 1 to "
                  "$10^{-8}$: 20 000 unit-variance inputs through a 3x3 `modulated_conv2d` (8 -> 4 channels, styles "
                  "$3\\,\\mathcal N(0, 1)$), each output channel's centre pixel",
                  np.asarray(_centre_outputs(x, weight, styles, True)) ** 2, sigma2 / (sigma2 + 1e-8))
    modulated = np.asarray(_centre_outputs(x, weight, styles, False)) ** 2
    d.monte_carlo("Without it, $\\mathbb E\\, y_j^2 = \\sigma_j^2 = \\sum_{i,k} s_i^2 w_{ijk}^2$ (eq. 2): the "
                  "variance follows the styles", modulated, sigma2)
    se = modulated.std(axis=0, ddof=1) / np.sqrt(n)
    d.inequality("...so the unit-variance claim fails without demodulation: each channel's estimate lies more than "
                 "4 standard errors from 1", np.full(c_out, 4.0), np.abs(modulated.mean(axis=0) - 1) / se)
    few = x[:6]
    d.numeric("Demodulation makes the output invariant to the style's overall scale: styles $7.3\\,s$ and $s$ give "
              "the same output (exactly with $\\epsilon = 0$)",
              modulated_conv2d(few, weight, jnp.broadcast_to(7.3 * styles, (6, c_in)), eps=0.0),
              modulated_conv2d(few, weight, jnp.broadcast_to(styles, (6, c_in)), eps=0.0))
    d.numeric("`demodulate` gives each output channel of each example's kernel the squared norm "
              "$\\sigma_j^2 / (\\sigma_j^2 + \\epsilon)$", np.sum(np.asarray(demodulate(
                  modulate(weight, styles[None]))) ** 2, axis=(2, 3, 4))[0], sigma2 / (sigma2 + 1e-8))
    scales = np.geomspace(0.1, 10.0, 9)
    sweep = x[:1000]  # the figure's points: 1 000 draws give each a 4.5% standard deviation, unseen on a log scale
    fig, ax = new_figure()
    for demod, label in ((True, "modulated and demodulated"), (False, "modulated only")):
        ax.plot(scales, [np.mean(np.asarray(_centre_outputs(sweep, weight, a * styles / 3.0, demod)) ** 2)
                         for a in scales], "o", label=f"{label} (1000 draws)")
    mean_sigma2 = np.mean(sigma2) / 9.0  # sigma^2 at style scale 1
    ax.plot(scales, mean_sigma2 * scales**2, "k--", lw=1, label="$\\overline{\\sigma_j^2}$, eq. 2")
    ax.axhline(1.0, color="k", lw=1, label="1, eq. 3")
    ax.set(xscale="log", yscale="log", xlabel="style scale", ylabel="output variance")
    ax.legend(fontsize="small", loc="lower right")
    d.figure(fig, "Output variance against the styles' scale for unit-variance inputs: without demodulation it grows "
                  "as the scale squared (eq. 2); demodulated, it stays at 1 (eq. 3).")


def _section_grouped_convolution(d: Derivation, rng: np.random.Generator) -> None:
    """The grouped convolution equals a per-example convolution with each example's own kernels."""
    d.say("Each example has its own kernels, so StyleGAN2 folds the batch into the channels: the input "
          "$(B, I, H, W)$ is read as one image of $B I$ channels, the $B$ kernels as $(B O, I, k, k)$, and one "
          "convolution with $B$ groups computes every example at once (sec. 2.2).")
    x = rng.standard_normal((5, 3, 6, 6))
    weight = rng.standard_normal((4, 3, 3, 3))
    styles = 1.0 + 0.5 * rng.standard_normal((5, 3))
    grouped = modulated_conv2d(x, weight, styles)
    d.numeric("The grouped convolution equals a convolution per example with its own modulated and demodulated "
              "kernel (`modulated_conv2d_per_example`, a `vmap`); 5 examples, 3 -> 4 channels, 3x3, 6x6",
              grouped, modulated_conv2d_per_example(x, weight, styles))
    rgb_weight = rng.standard_normal((2, 3, 1, 1))
    d.numeric("...and without demodulation, with a 1x1 kernel (the ToRGB layers')",
              modulated_conv2d(x, rgb_weight, styles, demodulate=False),
              modulated_conv2d_per_example(x, rgb_weight, styles, demodulate=False))
    kernels = np.asarray(demodulate(modulate(weight, styles)))
    by_scipy = np.array([[sum(signal.correlate2d(x[b, i], kernels[b, o, i], mode="same") for i in range(3))
                          for o in range(4)] for b in range(5)])
    d.numeric("A third witness: SciPy's `correlate2d` ('same', zero padding), summed over the input channels",
              grouped, by_scipy)


def _section_path_length(d: Derivation, rng: np.random.Generator) -> None:
    """E ||J^T y||^2 = ||J||_F^2 for y ~ N(0, I): what the path length measures."""
    d.say("The path-length penalty (eq. 4) draws an image of noise $y \\sim \\mathcal N(0, I)$ and measures "
          "$\\|J_w^T y\\|_2$, the gradient of $\\langle g(w), y \\rangle$ in $w$, one backward pass instead of a "
          "Jacobian. Its square is unbiased for $\\|J_w\\|_F^2$, since $\\mathbb E\\, y y^T = I$.")
    j11, j12, j21, j22, y1, y2 = sp.symbols("J11 J12 J21 J22 y1 y2", real=True)
    jac, y = sp.Matrix([[j11, j12], [j21, j22]]), sp.Matrix([y1, y2])
    square = sp.Poly(sp.expand((jac.T * y).dot(jac.T * y)), y1, y2)
    moments = {(2, 0): 1, (0, 2): 1, (1, 1): 0, (0, 0): 1}  # E y1^2 = E y2^2 = 1, E y1 y2 = 0
    expected = sum(coef * moments[powers] for powers, coef in square.terms())
    d.symbolic("$\\mathbb E\\,\\|J^T y\\|^2 = \\mathrm{tr}(J J^T) = \\|J\\|_F^2$ for a 2x2 $J$, taking $\\mathbb E\\, "
               "y_1^2 = \\mathbb E\\, y_2^2 = 1$ and $\\mathbb E\\, y_1 y_2 = 0$ (SymPy)", expected,
               sum(e**2 for e in jac))
    num_ws, w_dim, pixels, n = 3, 5, 12, 20_000
    maps = rng.standard_normal((num_ws, pixels, w_dim))  # a linear synthesis g(ws) = sum_l A_l w_l

    def image(ws):
        return jnp.einsum("lpd,ld->p", maps, ws)

    noise = rng.standard_normal((n, pixels))
    grads = jax.vmap(jax.grad(lambda ws, yy: jnp.sum(image(ws) * yy)), in_axes=(None, 0))(jnp.zeros((num_ws, w_dim)),
                                                                                           noise)
    d.monte_carlo("`path_lengths` of $J^T y$ from `jax.grad` of $\\langle g(w), y \\rangle$, squared, is unbiased "
                  "for the mean over the 3 ws of $\\|J_l\\|_F^2$ (a linear synthesis, 12 pixels, $w \\in "
                  "\\mathbb R^5$, 20 000 draws of $y$)", np.asarray(path_lengths(grads)) ** 2,
                  np.mean(np.sum(maps**2, axis=(1, 2))))


def _section_isometry(d: Derivation, rng: np.random.Generator) -> None:
    """The penalty's floor: a scaled isometry has the least spread of lengths among Jacobians of its size."""
    d.say("For $J^T J = a^2 I_D$ (a scaled isometry) $\\|J^T y\\| = a \\chi_D$, so the lengths concentrate at "
          "$a\\,\\mathbb E\\chi_D$; any other $J$ of the same Frobenius norm spreads them more, since "
          "$\\mathbb E \\sqrt{\\sum_i \\sigma_i^2 z_i^2}$ is largest when the singular values $\\sigma_i$ are equal. "
          "The penalty, the lengths' squared distance from their running mean, is smallest there.")
    pixels, w_dim, n, scale = 12, 5, 40_000, 1.7
    isometry = scale * np.linalg.qr(rng.standard_normal((pixels, w_dim)))[0]
    skewed = rng.standard_normal((pixels, w_dim)) * np.array([3.0, 1.0, 1.0, 0.3, 0.1])
    skewed *= np.linalg.norm(isometry) / np.linalg.norm(skewed)  # the same Frobenius norm, sigma_i unequal
    noise = rng.standard_normal((n, pixels))
    iso_lengths = np.asarray(path_lengths((noise @ isometry)[:, None, :]))
    skew_lengths = np.asarray(path_lengths((noise @ skewed)[:, None, :]))
    floor = scale**2 * (w_dim - _chi_mean(w_dim) ** 2)
    d.monte_carlo("For $J = 1.7\\,Q$ ($Q^T Q = I_5$) the lengths have mean $a\\,\\mathbb E\\chi_5 = 1.7 \\sqrt 2\\, "
                  "\\Gamma(3)/\\Gamma(5/2)$", iso_lengths, scale * _chi_mean(w_dim))

    def per_example_penalty(lengths, mean):
        return jax.vmap(lambda length: path_length_penalty(length[None], mean, 0.0)[0])(lengths)

    iso_penalty = np.asarray(per_example_penalty(iso_lengths, scale * _chi_mean(w_dim)))
    d.monte_carlo("...and `path_length_penalty` with its running mean $a$ at that mean has expectation "
                  "$a^2 (5 - (\\mathbb E\\chi_5)^2)$, "
                  "the variance of $a\\chi_5$", iso_penalty, floor)
    skew_penalty = np.asarray(per_example_penalty(skew_lengths, skew_lengths.mean()))
    se = np.hypot(iso_penalty.std(ddof=1), skew_penalty.std(ddof=1)) / np.sqrt(n)
    d.inequality("A random $J$ of the same Frobenius norm with unequal singular values (scaled 3, 1, 1, 0.3, 0.1) "
                 "pays a larger penalty, by more than 10 standard errors", iso_penalty.mean() + 10 * se,
                 skew_penalty.mean())
    dims = np.array([16, 64, 512])
    d.numeric("The floor relative to the squared length, $\\mathrm{Var}\\,\\chi_D / D$, falls like $1/(2D)$ "
              "(within 2% for $D = 16, 64$ and 512, the paper's $W$): in high dimension a scaled isometry pays almost "
              "nothing", np.array([(m - _chi_mean(int(m)) ** 2) / m for m in dims]), 1 / (2 * dims), rtol=0.02)
    fig, ax = new_figure()
    bins = np.linspace(0, max(iso_lengths.max(), skew_lengths.max()), 60)
    ax.hist(iso_lengths, bins=bins, density=True, alpha=0.5, label="scaled isometry $1.7\\,Q$")
    ax.hist(skew_lengths, bins=bins, density=True, alpha=0.5, label="unequal singular values, same $\\|J\\|_F$")
    ax.set(xlabel="path length $\\|J^T y\\|$", ylabel="density")
    ax.legend(fontsize="small")
    d.figure(fig, "The lengths $\\|J^T y\\|$ for $y \\sim \\mathcal N(0, I)$: concentrated for a scaled isometry, "
                  "spread for a Jacobian of the same Frobenius norm with unequal singular values.")


def _section_running_mean(d: Derivation, rng: np.random.Generator) -> None:
    """The running mean of the lengths: an exponential moving average, constant to the gradient."""
    lengths = 2.0 + 0.3 * rng.standard_normal(8)
    mean, steps, decay = 0.0, 300, 0.01
    for _ in range(steps):
        _, mean = path_length_penalty(lengths, mean, decay)
    d.numeric("The running mean $a$ of `path_length_penalty` is an exponential moving average: after 300 batches of "
              "mean $m$ from $a_0 = 0$, $a = m (1 - (1 - 0.01)^{300})$", mean,
              lengths.mean() * (1 - (1 - decay) ** steps))
    a_now = 0.7 + 0.01 * (lengths.mean() - 0.7)
    d.gradient("The penalty's gradient in the lengths is $2(\\ell_b - a)/B$, the running mean $a$ held constant",
               jax.grad(lambda ell: path_length_penalty(ell, 0.7, decay)[0])(lengths),
               2 * (lengths - a_now) / len(lengths))


def _section_truncation(d: Derivation, rng: np.random.Generator) -> None:
    """Truncation in W shrinks every style toward the mean style; mixing takes the layers before the cut-off from w1."""
    d.say("Truncation (StyleGAN, app. B): $w' = \\bar w + \\psi (w - \\bar w)$, a shrink toward the tracked mean "
          "style $\\bar w$, trading variety for typical, better-formed samples.")
    mu, cov_factor = np.array([1.0, -0.5]), np.array([[1.0, 0.0], [0.8, 0.4]])
    ws = mu + rng.standard_normal((4000, 2)) @ cov_factor.T
    ws[:, 1] += 0.4 * ws[:, 0] ** 2  # a curved toy distribution of styles
    w_avg, psi = ws.mean(axis=0), 0.7
    shrunk = np.asarray(truncate(ws, w_avg, psi))
    d.numeric("$\\|w' - \\bar w\\| = \\psi \\|w - \\bar w\\|$ for every $w$ ($\\psi = 0.7$, 4000 toy styles in "
              "2-D)", np.linalg.norm(shrunk - w_avg, axis=1), psi * np.linalg.norm(ws - w_avg, axis=1))
    d.numeric("...and the truncated styles' covariance is $\\psi^2$ times the original's", np.cov(shrunk.T),
              psi**2 * np.cov(ws.T))
    other = np.array([0.3, 0.2])
    draws = mu + rng.standard_normal((20_000, 2)) @ cov_factor.T
    d.monte_carlo("Toward another centre $c$: $\\mathbb E\\,\\|w' - c\\|^2 = \\psi^2 (\\mathrm{tr}\\,\\Sigma + "
                  "\\|\\mu - c\\|^2)$ for $w \\sim \\mathcal N(\\mu, \\Sigma)$",
                  np.sum((np.asarray(truncate(draws, other, psi)) - other) ** 2, axis=1),
                  psi**2 * (np.trace(cov_factor @ cov_factor.T) + np.sum((mu - other) ** 2)))
    tracked, beta, steps = np.zeros(2), 0.995, 500
    for _ in range(steps):
        tracked = update_w_avg(tracked, ws[:64], beta)
    d.numeric("`update_w_avg` is an exponential moving average: 500 updates on one batch of mean $m$ from 0 give "
              "$m (1 - \\beta^{500})$, $\\beta = 0.995$", tracked, ws[:64].mean(axis=0) * (1 - beta**steps))
    w1, w2 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    mixed = np.asarray(mixing_ws(w1, w2, np.array([1, 3, 6]), 6))
    from_w1 = np.all(mixed == w1[:, None, :], axis=2)
    d.numeric("Style mixing: with cut-offs 1, 3 and 6 of 6 layers, `mixing_ws` takes exactly the first 1, 3 and 6 "
              "layers from $w_1$ (6: no mixing) and the rest from $w_2$", from_w1.astype(float),
              (np.arange(6)[None, :] < np.array([[1], [3], [6]])).astype(float))
    fig, ax = new_figure()
    ax.scatter(*ws[:600].T, s=4, color="0.6", label="$w$ (toy styles)")
    for value, colour in ((0.7, "C0"), (0.3, "C1")):
        ax.scatter(*np.asarray(truncate(ws[:600], w_avg, value)).T, s=4, color=colour, label=f"$\\psi = {value}$")
    for point in ws[:6]:
        ax.annotate("", np.asarray(truncate(point, w_avg, 0.3)), point, arrowprops={"arrowstyle": "->", "lw": 0.8})
    ax.plot(*w_avg, "k*", ms=10, label="$\\bar w$")
    ax.set(xlabel="$w_1$", ylabel="$w_2$")
    ax.legend(fontsize="small")
    d.figure(fig, "Truncation on 2-D toy styles: every $w$ moves along the line to $\\bar w$, to a fraction $\\psi$ of "
                  "its distance; the cloud keeps its shape at scale $\\psi$.")


def _section_lazy_r1(d: Derivation, rng: np.random.Generator) -> None:
    """A lazy R1 step, scaled by the interval, has the expected gradient of the interval's per-step ones."""
    d.say("Lazy regularisation (StyleGAN2, sec. 3.1): R1 and the path-length penalty are evaluated every $k$-th "
          "minibatch only, multiplied by $k$. On a quadratic toy discriminator $D(x) = \\tfrac12 \\|B x\\|^2$, "
          "$\\nabla_x D = B^T B x$ and $R_1 = \\mathbb E\\,\\|B^T B x\\|^2 = \\mathrm{tr}((B^T B)^2 \\Sigma)$.")
    dim, n, interval, gamma = 3, 20_000, 16, 0.5
    b_mat = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    factor = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    x = rng.standard_normal((n, dim)) @ factor.T  # real data ~ N(0, factor factor^T)

    def lazy_term(b, batch):
        grads = jax.grad(lambda v: jnp.sum(0.5 * jnp.sum((v @ b.T) ** 2, axis=1)))(batch)  # d sum D / d x
        return interval * gamma / 2 * r1_penalty(grads)

    per_batch = jax.vmap(jax.grad(lazy_term), in_axes=(None, 0))(b_mat, x[:, None, :])  # one example a batch
    sigma = factor @ factor.T
    exact = jax.grad(lambda b: interval * gamma / 2 * jnp.trace((b.T @ b) @ (b.T @ b) @ sigma))(b_mat)
    d.monte_carlo("The lazy step's gradient $\\nabla_B\\, k \\tfrac{\\gamma}{2} R_1$ (a double backward through "
                  "`r1_penalty` of the input gradients) has expectation $k$ times the per-step one, "
                  "$k \\tfrac{\\gamma}{2} \\nabla_B \\mathrm{tr}((B^T B)^2 \\Sigma)$: the interval's total "
                  "($k = 16$, 20 000 single-example batches)", np.asarray(per_batch).reshape(n, -1),
                  np.asarray(exact).ravel())
    hessian_main = np.diag([1.0, 0.5, 2.0])
    hessian_reg = 0.3 * np.eye(3) + 0.1 * np.ones((3, 3))

    def drift(lr):
        """|theta after k steps with R every step - theta after k steps with k R on the first| from one start."""
        every, lazy = np.ones(3), np.ones(3)
        for t in range(interval):
            every = every - lr * (hessian_main + hessian_reg) @ every
            lazy = lazy - lr * (hessian_main @ lazy + (interval if t == 0 else 0) * hessian_reg @ lazy)
        return np.linalg.norm(every - lazy)

    d.inequality("On a quadratic loss, $k$ gradient steps with $R$ every step and with $kR$ on the first step part "
                 "at second order in the step size: halving it divides the gap by about 4 (at most 0.3 here)",
                 drift(0.005), 0.3 * drift(0.01))


def _section_lazy_adam(d: Derivation) -> None:
    """lazy_adam's lr c and betas ** c keep Adam's step and time constant per minibatch."""
    d.say("In the reference the regularisation is a separate optimizer step, so a lazily regularised player steps "
          "$k + 1$ times in $k$ minibatches. `lazy_adam` sets $c = k/(k + 1)$, the learning rate $c\\,\\eta$ and the "
          "betas $\\beta^c$.")
    k, lr, betas = 16, 2e-3, (0.0, 0.99)
    lazy_lr, lazy_betas = lazy_adam(lr, betas, k)
    d.numeric("$(\\beta^c)^{k + 1} = \\beta^k$ and $(k + 1)\\, c\\, \\eta = k \\eta$: over a period of $k$ "
              "minibatches the moments decay and the steps add up as without the extra step ($k = 16$, "
              "StyleGAN2's betas (0, 0.99))", np.array([lazy_betas[1] ** (k + 1), (k + 1) * lazy_lr]),
              np.array([betas[1] ** k, k * lr]))
    periods = 12
    plain = np.zeros(periods * k)
    plain[0] = 1.0
    for t in range(1, periods * k):
        plain[t] = betas[1] * plain[t - 1]  # the second moment's response to one squared gradient, k steps a period
    lazy = np.zeros(periods * (k + 1))
    lazy[0] = 1.0
    for t in range(1, periods * (k + 1)):
        lazy[t] = lazy_betas[1] * lazy[t - 1]  # the same with k + 1 steps a period
    d.numeric("Adam's second moment, simulated: its response to one gradient, read at each period's end, is the "
              "same with $k$ steps of $\\beta$ a period and with $k + 1$ steps of $\\beta^c$ (12 periods)",
              lazy[::k + 1][1:], plain[::k][1:])


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("stylegan", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    _section_demodulation(d, rng)
    _section_grouped_convolution(d, rng)
    _section_path_length(d, rng)
    _section_isometry(d, rng)
    _section_running_mean(d, rng)
    _section_truncation(d, rng)
    _section_lazy_r1(d, rng)
    _section_lazy_adam(d)
    return d
