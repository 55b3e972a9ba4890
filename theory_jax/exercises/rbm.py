"""Exercises of the RBM: contrastive divergence's gradient estimate."""

from __future__ import annotations

from theory_jax.exercises import Exercise, Mistake
from theory_jax.rbm import gibbs_chain, hidden_probs


def _statistics(v, weight, hidden_bias, over=None):
    p = hidden_probs(v, weight, hidden_bias)
    n = v.shape[0] if over is None else over
    return {"hidden_bias": p.sum(0) / n, "visible_bias": v.sum(0) / n, "weight": v.T @ p / n}


def _sign(v, chain_start, u_h, u_v, weight, visible_bias, hidden_bias):
    v_k = gibbs_chain(chain_start, u_h, u_v, weight, visible_bias, hidden_bias)
    data, model = _statistics(v, weight, hidden_bias), _statistics(v_k, weight, hidden_bias)
    return {k: model[k] - data[k] for k in data}, v_k


def _summed(v, chain_start, u_h, u_v, weight, visible_bias, hidden_bias):
    v_k = gibbs_chain(chain_start, u_h, u_v, weight, visible_bias, hidden_bias)
    data, model = _statistics(v, weight, hidden_bias, 1), _statistics(v_k, weight, hidden_bias, 1)
    return {k: data[k] - model[k] for k in data}, v_k


EXERCISES = (
    Exercise(
        "cd_gradient",
        "contrastive divergence: the data's statistics minus those after k Gibbs sweeps (Hinton 2002)",
        ("d mean log p(v) / d theta = E_data[stats] - E_model[stats] (eq. 4); CD-k replaces the model's "
         "expectation by the chains after k sweeps.",
         "The statistics given v: mean p(h|v) for the hidden bias, mean v for the visible bias, v^T p(h|v) / B for "
         "the weight, with the hidden probabilities, not samples. Run the chain from chain_start (gibbs_chain).",
         "v_k = gibbs_chain(chain_start, ...); return {name: data[name] - model[name]}, v_k, with data and model "
         "the statistics at v and at v_k."),
        (Mistake("your gradient has the wrong sign: it is the data's statistics minus the model's (the "
                 "log-likelihood rises toward the data)", _sign),
         Mistake("your statistics are sums over the batch: the gradient of the mean log-likelihood takes their "
                 "means", _summed)),
        withhold=("sufficient_statistics",), gives=("hidden_probs",)),
)
