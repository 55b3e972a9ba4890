"""Every twin-training case (``practice_jax/twin_cases.py``: a short run in both trainers, compared step by step)
passes, and docs/twin_training.json records them as they are. Their negative controls, faults put into the JAX
trainer, are in ``test_jax_train.py``. The cases are independent: ``conftest.SPREAD`` spreads them over the workers."""

from __future__ import annotations

import dataclasses
import json

import pytest

from practice_jax import twin_cases, twin_training
from practice_jax.__main__ import main as practice_jax
from practice_jax.twins import TRAINERS


@pytest.mark.parametrize("case", twin_cases.ALL, ids=[c.id for c in twin_cases.ALL])
def test_twin_training_case_passes(case, both):
    """Each twin-training case: the two trainers' losses at every step, weights and EMA weights at the end agree
    within the step tolerance (the faults below are its negative controls)."""
    result = twin_training.run_case(case)
    assert result.passed, result.message()


def test_twin_training_case_ids_are_unique_and_name_their_model():
    ids = [c.id for c in twin_cases.ALL]
    assert len(set(ids)) == len(ids) and all(c.id.startswith(f"{c.model}/run/") for c in twin_cases.ALL)
    assert set(twin_cases.CASES) <= set(TRAINERS)  # a case for a model the JAX trainer trains, and no other


def test_the_recorded_twin_training_holds_every_case_as_it_is_now(tmp_path, capsys):
    """docs/twin_training.json (``practice_jax check --record``, shown on the topic pages) measures exactly the cases
    of ``twin_cases``, each passed; ``record`` keeps the models not run. Controls: a renamed case no longer matches,
    and ``check`` of a model without cases says so in one line (exit 2)."""
    from practice_jax.check import RECORD, record

    recorded = json.loads(RECORD.read_text())
    ids = {m: [r["case"] for r in rows] for m, rows in recorded["topics"].items()}
    assert ids == {m: [c.id for c in cases] for m, cases in twin_cases.CASES.items()}
    assert all(r["passed"] for rows in recorded["topics"].values() for r in rows)
    renamed = {**twin_cases.CASES, "vae": (dataclasses.replace(twin_cases.CASES["vae"][0], id="vae/run/renamed"),)}
    assert ids != {m: [c.id for c in cases] for m, cases in renamed.items()}
    path = tmp_path / "twin_training.json"
    path.write_text(RECORD.read_text())
    record({"ddpm": [{"case": "ddpm/run/new"}]}, {"cpu": "another"}, path)
    after = json.loads(path.read_text())
    assert after["topics"]["ddpm"] == [{"case": "ddpm/run/new"}] and after["environments"]["ddpm"] == {"cpu": "another"}
    assert after["topics"]["vae"] == recorded["topics"]["vae"] and list(after["topics"]) == list(recorded["topics"])
    assert practice_jax(["check", "wavenet"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
