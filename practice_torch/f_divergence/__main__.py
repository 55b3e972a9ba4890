"""``python -m practice_torch.f_divergence``: critic-only estimates of the six divergences vs the truth."""

from practice_torch.f_divergence.estimate import main

main()
