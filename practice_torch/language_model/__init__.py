"""Character language models in PyTorch: the twin of ``theory_jax/language_model.py``.

* ``functions``: next-token cross-entropy, the decoding distributions (temperature, top-k, top-p), one inverse-CDF
  step of each with its uniform passed in, greedy, and beam search (on any ``next_log_probs``);
* ``tokenisers``: characters, and byte-pair encoding learned from the training text (JSON, exact round trip);
* ``networks``: ``CharLSTM`` and ``CharTransformer`` (on ``practice_torch.nets.Transformer``), incremental decoding
  (LSTM state, key-value cache) and ``generate`` with any strategy;
* ``training``: the training adapter (``python -m practice_torch train language_model``), not imported here.
"""

from practice_torch.language_model.functions import (STRATEGIES, beam_search, beam_search_table, bits_per_token,
                                                     cross_entropy, greedy_step, inverse_cdf, log_softmax, next_token,
                                                     prefix_index, sequence_log_prob, temperature_probs,
                                                     temperature_step, top_k_probs, top_k_step, top_p_probs, top_p_step)
from practice_torch.language_model.networks import CharLSTM, CharTransformer, build_language_model, generate
from practice_torch.language_model.tokenisers import BPETokenizer, CharTokenizer, pretokenize

__all__ = [
    "STRATEGIES", "BPETokenizer", "CharLSTM", "CharTokenizer", "CharTransformer", "beam_search", "beam_search_table",
    "bits_per_token", "build_language_model", "cross_entropy", "generate", "greedy_step", "inverse_cdf",
    "log_softmax", "next_token", "prefix_index", "pretokenize", "sequence_log_prob", "temperature_probs",
    "temperature_step", "top_k_probs", "top_k_step", "top_p_probs", "top_p_step",
]
