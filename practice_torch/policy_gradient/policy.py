"""The character language model as a policy (``theory_jax/policy_gradient.py``, section 4): states are prefixes,
actions next characters, a response's log-probability the sum of its characters' (the prompt masked out), and the
judge's reward arrives at the end.

Written once for the fine-tuning topics (policy_gradient, ppo, trpo, dpo, reward_model): the frozen reference
model read from a trained ``language_model`` run, prompts cut from the data's windows, responses drawn from the
policy with the engine's uniforms, and the per-character log-probabilities and exact KL to the reference.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from practice_torch.engine.runs import inherited_keys
from practice_torch.language_model.networks import LanguageModel, build_language_model, generate
from practice_torch.policy_gradient.functions import action_log_probs, sequence_log_prob

LM_KEYS = ("architecture", "context", "dim", "layers", "heads", "tie", "position")  # inherited from the reference run
LM_ARCHITECTURE = ("reference", *LM_KEYS)  # what a fine-tuned run's checkpoint fixes of its keys
# the ranges of the numeric keys of ``LanguageSettings`` (``engine.config.check_model``), in each fine-tuning model's
# ``RANGES``
LM_RANGES = {"context": "at least 2",
             **dict.fromkeys(("dim", "layers", "heads", "prompt_length", "response_length"), "positive")}
BUILDS_ON = {"reference": "language_model"}  # the run a fine-tuned run starts from (engine.runs.Parent)


@dataclass
class LanguageSettings:
    """The reference language model's settings (inherited from its run: ``inherit``) and the shape of an episode:
    ``prompt_length`` characters of a data window, then ``response_length`` generated ones."""

    reference: str = ""  # a trained language_model run on shakespeare: the initial policy and the frozen reference
    architecture: str = "transformer"
    context: int = 64
    dim: int = 128
    layers: int = 4
    heads: int = 4
    tie: bool = True
    position: str = "learned"
    prompt_length: int = 32
    response_length: int = 32


def build_lm(s: LanguageSettings, vocab_size: int) -> LanguageModel:
    """A language model with the reference run's settings, without dropout (the policy's samples and its
    gradient pass must see the same network)."""
    return build_language_model(s.architecture, vocab_size, s.context, s.dim, s.layers, s.heads, 0.0, s.tie, s.position)


def inherit(s: LanguageSettings, parents: dict) -> LanguageSettings:
    """The settings with the reference run's language-model keys (``LM_KEYS``): what the engine records in the
    fine-tuned run's config before its first build (``practice_torch.models.inherited``)."""
    return inherited_keys(s, parents.get("reference"), LM_KEYS)


def check_episode(s: LanguageSettings) -> None:
    """One line (ValueError) unless prompt and response fit the model's context together."""
    if s.prompt_length < 1 or s.response_length < 1:
        raise ValueError(f"model.prompt_length and model.response_length must be positive, got {s.prompt_length} "
                         f"and {s.response_length}")
    if s.prompt_length + s.response_length > s.context:
        raise ValueError(f"model.prompt_length + model.response_length = {s.prompt_length + s.response_length} "
                         f"exceeds the reference model's context {s.context}; shorten one of them")


class PolicyAndReference(nn.Module):
    """The policy pi (trainable, initialised as the reference) and the frozen reference pi_ref (requires_grad off,
    always in eval mode); both are in the run's checkpoints, so ``sample``, ``eval`` and ``--resume`` never read the
    reference run again. Subclasses add heads (PPO's value head)."""

    def __init__(self, lm: LanguageModel):
        super().__init__()
        self.policy = lm
        self.reference = copy.deepcopy(lm).requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.reference.eval()
        return self


def build_pair(s: LanguageSettings, data, parents: dict) -> LanguageModel:
    """The language model to start from: the reference run's (``parents['reference']``, its settings inherited in
    ``s``), its weights copied the first time; afterwards an empty one, whose weights come with this run's
    checkpoint. ValueError, one line, for a run without a reference or a reference on another data set."""
    if data.modality != "text" or data.name != "shakespeare":
        raise ValueError(f"the policy is the character language model of shakespeare, not {data.name}")
    reference = parents.get("reference")
    if reference is None:
        raise ValueError("this model fine-tunes a trained language model: --set model.reference=RUN_DIR (train one "
                         "with python -m practice_torch train language_model --out runs/lm)")
    lm = build_lm(s, data.num_classes)
    if reference.net is not None:  # the first build: the reference run's weights
        if reference.config.data.name != data.name:
            raise ValueError(f"model.reference={reference.run} was trained on {reference.config.data.name}; this run "
                             f"is on {data.name}")
        lm.load_state_dict(reference.net.state_dict())
    check_episode(s)
    return lm


def prompts_of(x: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """The first ``prompt_length`` characters of each window. x: (B, W) int64 -> (B, P)."""
    return x[:, :prompt_length]


@torch.no_grad()
def sample_responses(lm: LanguageModel, prompts: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """K responses per prompt drawn from ``lm`` at temperature 1 (the policy itself), by the inverse CDF of the
    given uniforms. prompts: (B, P) int64, uniforms: (B, K, L) in [0, 1) -> (B, K, L) int64."""
    b, k, length = uniforms.shape
    was_training = lm.training
    lm.eval()
    rows = prompts.repeat_interleave(k, dim=0)
    out = generate(lm, rows, length, "temperature", uniforms.reshape(b * k, length), temperature=1.0)
    lm.train(was_training)
    return out.reshape(b, k, length)


def episode_logits(lm: LanguageModel, prompts: torch.Tensor, responses: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, logits): prompt and response as one sequence, and the logits that predict each of its tokens from
    the ones before. prompts: (N, P), responses: (N, L) -> ((N, P + L), (N, P + L - 1, V))."""
    tokens = torch.cat([prompts, responses], dim=1)
    return tokens, lm(tokens[:, :-1]).float()


def response_log_prob(logits: torch.Tensor, tokens: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """log pi(y | prompt) = sum_t log pi(y_t | prompt, y_<t): ``sequence_log_prob`` over the whole episode with the
    prompt's positions masked out. logits: (N, T - 1, V), tokens: (N, T) -> (N,)."""
    mask = (torch.arange(tokens.shape[1] - 1, device=tokens.device) >= prompt_length - 1).to(logits.dtype)
    return sequence_log_prob(logits, tokens[:, 1:], mask.expand(len(tokens), -1))


def response_token_log_probs(logits: torch.Tensor, tokens: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """log pi(y_t | prompt, y_<t) of each response character. logits: (N, T - 1, V), tokens: (N, T) -> (N, L)."""
    return action_log_probs(logits[:, prompt_length - 1:], tokens[:, prompt_length:])


def token_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(pi(. | s_t) || pi_ref(. | s_t)) at each visited state, exactly over the vocabulary.
    logits, ref_logits: (N, L, V) -> (N, L)."""
    logp, ref = torch.log_softmax(logits.float(), -1), torch.log_softmax(ref_logits.float(), -1)
    return torch.sum(logp.exp() * (logp - ref), -1)


def decode(ids: torch.Tensor) -> list[str]:
    """Rows of character ids as strings. ids: (N, L) -> N strings."""
    from practice_torch.data.text import shakespeare_vocab

    vocab = shakespeare_vocab()
    return [vocab.decode(row) for row in ids.cpu()]


def hidden_states(lm: LanguageModel, x: torch.Tensor) -> torch.Tensor:
    """The last hidden layer under the head: what a value or reward head reads. x: (N, T) -> (N, T, dim)."""
    if lm.architecture == "transformer":
        return lm.trunk(lm.embedding(x))
    return lm.lstm(lm.embedding(x))[0]


def head_logits(lm: LanguageModel, h: torch.Tensor) -> torch.Tensor:
    """The next-character logits of hidden states h: (N, T, dim) -> (N, T, V); lm(x) = head_logits(lm,
    hidden_states(lm, x))."""
    return lm.logits(h) if lm.architecture == "transformer" else lm.head(h)
