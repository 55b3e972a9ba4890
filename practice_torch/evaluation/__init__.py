"""Evaluation of generative models in PyTorch: the twin of ``theory_jax/evaluation.py``.

    metrics.py    FID, Inception Score, MMD / KID, precision and recall, bits/dim, exact W2 (the spec'd functions)
    features.py   the project's feature network per image data set (trained, cached, ``features`` command)
    inception.py  the standard FID network (Inception-v3 pool features) from weights in the user's --data-dir
    samples.py    the sample metrics ``eval`` reports for image models, and the sanity table's measurements
    galaxies.py   the GalSim parameters measured back off galaxy images (flux, HSM shapes, radius, concentration):
                  how well a conditioned model (flow_matching, text_to_image) follows what it was asked for

The package exports the math (``metrics``), which loads no data set; the feature networks are
``practice_torch.evaluation.features`` (``feature_network``, ``embed``).
"""

from practice_torch.evaluation.metrics import (bits_per_dim, dequantize, fid_from_features, frechet_distance,
                                               gaussian_statistics, inception_score, inception_score_splits, kid,
                                               kid_subsets, knn_radii, mmd2_from_kernels, mmd2_unbiased,
                                               nll_on_level_scale, polynomial_kernel, precision_recall, rbf_kernel,
                                               sqrtm_psd, squared_distances, wasserstein2)

__all__ = [
    "bits_per_dim", "dequantize", "fid_from_features", "frechet_distance", "gaussian_statistics", "inception_score",
    "inception_score_splits", "kid",
    "kid_subsets", "knn_radii", "mmd2_from_kernels", "mmd2_unbiased", "nll_on_level_scale", "polynomial_kernel",
    "precision_recall", "rbf_kernel", "sqrtm_psd", "squared_distances",
    "wasserstein2",
]
