"""Training in JAX: the PyTorch side's models trained the functional way, into runs both backends read and resume.

``python -m practice_jax train MODEL`` (``python -m theory_jax train MODEL`` too) is ``loop.py``: the run, its
batches, noise, checkpoints and logs as the PyTorch engine keeps them, around one jitted step. Each trained model has
a module here, ``<model>.py``, whose ``jax_twin(net, cfg)`` gives the loop the network's flax twin and its loss (or,
for the GAN, its players and their round). The package mirrors ``practice_torch`` and reads it (the data sets, the
presets, the run format), never the other way (``tests/test_imports.py``); the twin checks of trained runs and the
twin-training cases, which compare the two backends, are in ``shared_specs``.
"""
