"""The RBM as modules: ``RBM`` (the parameters, the twin of ``theory_jax.rbm.RBM``) and ``ImageRBM`` (what trains).

``ImageRBM`` holds an ``RBM`` and the state of its training in buffers, so every checkpoint has it: the persistent
chains of PCD (Tieleman 2008) and the pixel counts of the binarised training examples it saw, from which come the
base rates of AIS and the independent-Bernoulli baseline of the evaluation. Randomness is an argument.
"""

from __future__ import annotations

import torch
from torch import nn

from practice_torch.rbm.functions import free_energy, gibbs_chain


class RBM(nn.Module):
    """A Bernoulli-Bernoulli RBM: weight (D, H), visible_bias a (D,), hidden_bias b (H,). weight ~ N(0, 0.01^2), biases
    0 (Hinton's practical guide, 2010)."""

    def __init__(self, visible: int, hidden: int):
        super().__init__()
        self.weight = nn.Parameter(0.01 * torch.randn(visible, hidden))
        self.visible_bias = nn.Parameter(torch.zeros(visible))
        self.hidden_bias = nn.Parameter(torch.zeros(hidden))

    def params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.weight, self.visible_bias, self.hidden_bias

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) (B,)."""
        return free_energy(v, *self.params())

    def contrastive_loss(self, v, chain_start, u_h, u_v) -> torch.Tensor:
        """mean F(v) - mean F(v_k), v_k held fixed: its gradient is minus the CD-k estimate (``cd_gradient``)."""
        with torch.no_grad():
            v_k = gibbs_chain(chain_start, u_h, u_v, *self.params())
        return free_energy(v, *self.params()).mean() - free_energy(v_k, *self.params()).mean()


class ImageRBM(nn.Module):
    """An RBM on binarised images of ``image_shape`` (C, H, W), D = C H W visible units, trained by CD-k or PCD
    (``persistent``: ``chains`` persistent chains, one per example of the batch, started at the first batch; k is
    the number of sweeps of the uniforms ``loss`` is given).
    Buffers: ``chains`` (chains, D) and ``chains_started``; ``pixel_counts`` (D,) and ``examples_seen`` (), float64,
    of the training examples seen."""

    def __init__(self, image_shape: tuple[int, ...], hidden: int, persistent: bool = False, chains: int = 0):
        super().__init__()
        self.image_shape, visible = tuple(image_shape), int(torch.tensor(image_shape).prod())
        self.rbm = RBM(visible, hidden)
        self.visible, self.hidden, self.persistent = visible, hidden, persistent
        self.register_buffer("chains", torch.zeros(chains if persistent else 0, visible))
        self.register_buffer("chains_started", torch.zeros((), dtype=torch.bool))
        self.register_buffer("pixel_counts", torch.zeros(visible, dtype=torch.float64))
        self.register_buffer("examples_seen", torch.zeros((), dtype=torch.float64))

    def params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.rbm.params()

    def marginals(self) -> torch.Tensor:
        """p(v_i = 1) of the training examples seen, Laplace-smoothed: (count_i + 1) / (seen + 2), float64 (D,)."""
        return (self.pixel_counts + 1) / (self.examples_seen + 2)

    def loss(self, v: torch.Tensor, u_h: torch.Tensor, u_v: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """CD-k or PCD on binary v (B, D): mean F(v) - mean F(v_k), v_k the end of k sweeps from v (CD) or from the
        persistent chains (PCD), which then move on to v_k; counts v's pixels. -> (loss, {'recon_error'})."""
        with torch.no_grad():
            if self.training:
                self.pixel_counts += v.sum(0).double()
                self.examples_seen += len(v)
            start = v
            if self.persistent:
                start = torch.where(self.chains_started, self.chains, v)  # chosen on the device: no host read
            v_k = gibbs_chain(start, u_h, u_v, *self.params())
            if self.persistent and self.training:
                self.chains.copy_(v_k)
                self.chains_started.fill_(True)
            recon = torch.sigmoid(self.rbm.visible_bias + torch.sigmoid(self.rbm.hidden_bias + v @ self.rbm.weight)
                                  @ self.rbm.weight.T)
        loss = free_energy(v, *self.params()).mean() - free_energy(v_k, *self.params()).mean()
        return loss, {"recon_error": ((recon - v) ** 2).sum(-1).mean()}
