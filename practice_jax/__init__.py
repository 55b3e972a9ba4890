"""Training in JAX: the PyTorch side's models trained the functional way, into runs both backends read and resume.

``python -m practice_jax train MODEL`` (``cli.py``) trains a run as the PyTorch engine keeps one (its batches, noise,
checkpoints and logs, ``runs.py`` and ``loop.py``) with each model's jitted ``train_step`` on a ``TrainState``
(``state.py``); each trained model has a module here, ``<model>.py``: its loss, its step and ``jax_twin(net, cfg)``,
the network's flax twin bound to its setup (for the GAN, its players and their round, ``game.py``). ``python -m
practice_jax sample RUN`` (``sampling.py``, ``samplers/``) samples a run in JAX. The package mirrors
``practice_torch`` and reads it (the data sets, the presets, the run format, the bookkeeping both loops share),
never the other way (``tests/test_imports.py``).
"""
