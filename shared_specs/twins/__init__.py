"""The JAX twin checks of trained runs, one module per topic with a ``checks`` line in the catalogue:
cross-backend, as the spec cases are, so they live here and ``practice_torch`` knows nothing of JAX.

``check(net, cfg, batch, rng, perturb) -> list[Row]`` recomputes a trained run's held-out metrics with the flax twin
of its network (``python -m theory_jax check RUN``, ``shared_specs/twin_check.py``). ``nets.py`` holds the flax
twins of the shared networks and the layout changes between torch's channels-first images and flax's channels-last
ones, which the JAX trainer (``practice_jax``) uses too.
"""
