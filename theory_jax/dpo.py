"""Direct preference optimisation: Bradley-Terry on the implicit reward beta log(pi / pi_ref).

Lectures: direct preference optimisation (Rafailov et al. 2023, "Direct preference optimization: your language
model is secretly a reward model", eq. 3-7 and Appendix A.1-A.4; Peters & Schaal 2007 and Korbak et al. 2022 for
the KL-regularised optimum).

The KL-regularised reward objective max_pi E_{y ~ pi}[r(y)] - beta KL(pi || pi_ref) is maximised by

    pi*(y) = pi_ref(y) exp(r(y) / beta) / Z,     so   r(y) = beta log(pi*(y) / pi_ref(y)) + beta log Z     (eq. 4-5)

and Z cancels in Bradley-Terry's difference of rewards. Writing the reward through the policy gives DPO's loss

    L = -E log sigmoid(beta [log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l)])                          (eq. 7)

the reward model's loss on the implicit reward r_hat = beta log(pi / pi_ref). At pi = pi_ref every margin is 0 and
L = log 2; its gradient weighs each pair by sigmoid(r_hat_l - r_hat_w), how wrongly the policy ranks it.
Twin: ``practice_torch/dpo`` (same names, same arguments); cases: ``shared_specs/dpo.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


# 1. The pure functions (twins in practice_torch.dpo) ------------------------------------------------------------
def implicit_reward(policy_logps, ref_logps, beta):
    """r_hat(y) = beta (log pi(y) - log pi_ref(y)) (eq. 5 without beta log Z). (B,), (B,), () -> (B,)."""
    return beta * (policy_logps - ref_logps)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """-mean log sigmoid(r_hat_w - r_hat_l) (Rafailov et al. 2023, eq. 7), with the implicit rewards
    r_hat = beta (log pi - log pi_ref) (``implicit_reward``) of the chosen answer w and the rejected one l.
    policy_chosen, policy_rejected: (B,) the policy's sequence log-probabilities of the chosen and the rejected
    answers; ref_chosen, ref_rejected: (B,) the reference model's, constants (stop_gradient: a reference that is
    updated is a bug); beta: () the KL weight -> ()."""
    margin = implicit_reward(policy_chosen, jax.lax.stop_gradient(ref_chosen), beta) - implicit_reward(
        policy_rejected, jax.lax.stop_gradient(ref_rejected), beta)
    return jnp.mean(jax.nn.softplus(-margin))


def kl_regularised_optimum(ref_log_probs, rewards, beta):
    """log pi*(y) = log pi_ref(y) + r(y)/beta - log Z over a finite set of responses (eq. 4).
    ref_log_probs, rewards: (..., K), beta: () -> (..., K)."""
    return jax.nn.log_softmax(ref_log_probs + rewards / beta, axis=-1)
