"""The reward model on the character language model's trunk (Ouyang et al. 2022, section 3.5; Stiennon et al. 2020,
section 3.4): the reference run's Transformer (or LSTM) without its next-character head, a scalar head read at the
last token of prompt + response, and beside it the frozen reference language model that draws the pairs."""

from __future__ import annotations

import copy

import torch
from torch import nn

from practice_torch.policy_gradient.policy import hidden_states
from practice_torch.reward_model.functions import last_token_reward


class RewardModel(nn.Module):
    """r(prompt, y) = w . h_{T-1} + b (``last_token_reward``), h the trainable trunk's last hidden layer over the
    episode (prompt and response, T = P + L characters). ``trunk`` starts as the reference run's language model
    (its next-character head unused); ``reference`` is a frozen copy (requires_grad off, always in eval mode) that
    draws the responses of the preference pairs. Both are checkpointed, so sample, eval and --resume never read the
    reference run again. The head starts at zero: every reward 0, every preference 1/2."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.trunk = lm
        self.reference = copy.deepcopy(lm).requires_grad_(False).eval()
        self.head = nn.Linear(lm.embedding.weight.shape[1], 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.reference is not None:
            self.reference.eval()
        return self

    def without_reference(self) -> RewardModel:
        """This model as a frozen judge of another run (PPO's reward): the reference copy, which only draws the
        preference pairs, dropped from memory and from the checkpoint."""
        self.reference = None
        return self

    def forward(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """The reward of each episode. prompts: (N, P), responses: (N, L) int64 -> (N,) float32."""
        tokens = torch.cat([prompts, responses], dim=1)
        h = hidden_states(self.trunk, tokens).float()
        lengths = torch.full((len(tokens),), tokens.shape[1], device=tokens.device)
        return last_token_reward(h, lengths, self.head.weight.float(), self.head.bias.float())
