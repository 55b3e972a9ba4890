"""The benchmark runner's interface (timings themselves are never asserted)."""

from benchmarks.__main__ import BENCHMARKS, main


def test_unknown_benchmark_is_a_usage_error(capsys):
    assert main(["no_such_benchmark"]) == 2
    assert "choose from" in capsys.readouterr().err


def test_registry_names_the_first_entries():
    assert "vae_step" in BENCHMARKS
