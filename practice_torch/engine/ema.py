"""An exponential moving average of the weights (Polyak averaging), the usual sampling weights.

theta_ema <- d_t theta_ema + (1 - d_t) theta, with d_t = min(decay, (1 + t) / (10 + t)) so that the
average does not remember the random initialisation for ~1/(1 - decay) steps.
"""

from __future__ import annotations

import torch
from torch import nn

from practice_torch.engine.bookkeeping import ema_decay


class EMA:
    def __init__(self, net: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.shadow = {name: p.detach().clone() for name, p in net.named_parameters()}

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.updates += 1
        d = ema_decay(self.decay, self.updates)
        names = list(self.shadow)
        params = dict(net.named_parameters())
        torch._foreach_lerp_([self.shadow[n] for n in names], [params[n].detach() for n in names], 1.0 - d)

    def weights(self, net: nn.Module) -> dict[str, torch.Tensor]:
        """``net.state_dict()`` with the parameters replaced by their averages (buffers as they are)."""
        return {**net.state_dict(), **self.shadow}

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA weights do not match the model: {sorted(missing)[:3]}")
        for name, t in state["shadow"].items():
            self.shadow[name].copy_(t)
