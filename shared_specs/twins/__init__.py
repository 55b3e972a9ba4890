"""The JAX twins of trained networks, one module per topic that has them (the catalogue's ``checks`` line, and the
four models ``python -m theory_jax train`` trains): cross-backend, as the spec cases are, so they live here and
``practice_torch`` knows nothing of JAX.

``check(net, cfg, batch, rng, perturb) -> list[Row]`` recomputes a trained run's held-out metrics with the flax twin
of its network (``python -m theory_jax check RUN``, ``shared_specs/twin_check.py``); ``jax_twin(net, cfg)`` gives
the JAX trainer (``shared_specs/jax_train.py``) the flax twin and its loss or its players' round. ``nets.py`` holds
the twins of the shared networks and the layout changes between torch's channels-first images and flax's
channels-last ones.
"""
