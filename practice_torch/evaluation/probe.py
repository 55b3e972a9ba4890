"""The linear probe: how much of the labels a representation makes linearly readable (Donahue et al. 2017, Table 1).

BiGAN's encoder, the autoencoder's code and the VAE's posterior mean are read by the same probe, so their figures
compare: a multinomial logistic regression (scikit-learn, L2, C = 1) on standardised features of ``probe_examples``
training images, scored on the held-out split, beside the same probe on the raw pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def linear_probe(train_features, train_labels, test_features, test_labels) -> float:
    """Held-out accuracy of a multinomial logistic regression (scikit-learn, L2, C = 1) fitted on standardised
    features. train_features: (N, F...), train_labels: (N,), test_features: (M, F...), test_labels: (M,) -> share."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train_features.double().flatten(1).numpy(), train_labels.numpy())
    return float(probe.score(test_features.double().flatten(1).numpy(), test_labels.numpy()))


@torch.no_grad()
def encoded(encode: Callable, x, device: torch.device, batch_size: int = 1000) -> torch.Tensor:
    """``encode`` (a representation, (B, *shape) -> (B, F)) of x (N, *shape) in batches on ``device`` -> (N, F) on
    the CPU."""
    return torch.cat([encode(chunk.to(device)).float().cpu() for chunk in x.split(batch_size)])


def probe_against_pixels(encode: Callable, train: tuple, test: tuple, device: torch.device) -> dict[str, float]:
    """``linear_probe`` of ``encode``'s features and of the raw inputs. train, test: (x (N, *shape), y (N,)) ->
    {"probe_accuracy", "probe_accuracy_inputs", "probe_examples"}."""
    return {"probe_accuracy": linear_probe(encoded(encode, train[0], device), train[1],
                                           encoded(encode, test[0], device), test[1]),
            "probe_accuracy_inputs": linear_probe(train[0], train[1], test[0], test[1]),
            "probe_examples": len(train[0])}
