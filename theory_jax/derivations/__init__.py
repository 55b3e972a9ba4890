"""Each topic's derivation, ``theory_jax/derivations/<topic>.py``: ``TITLE``, ``LECTURES``, ``derive(echo=None)`` and its
steps (``_section_*``), checked against the math of ``theory_jax/<topic>.py``; ``python -m theory_jax <topic>`` runs one.
"""
