"""The suite's own scheduling (``tests/conftest.py``): each test file runs whole on one pytest-xdist worker, so its
module fixtures are built once; the derivations and the spec cases (``SPREAD``) go out one by one."""

from conftest import SPREAD, pytest_xdist_make_scheduler, work_unit, xla_flags


class Config:
    """What the scheduler reads of pytest's config: ``--dist`` and the worker count."""

    def __init__(self, dist: str):
        self.values = {"dist": dist, "tx": ["2*popen"]}

    def getvalue(self, name):
        return self.values[name]

    getoption = getvalue


def test_a_file_is_one_unit_and_a_spread_case_is_its_own():
    assert work_unit("tests/test_cli.py::test_train[SIGTERM]") == work_unit("tests/test_cli.py::test_eval")
    assert "test_derivations.py" in SPREAD and "test_specs.py" in SPREAD
    # negative control: two derivations are two units, as are tests of two files
    assert work_unit("tests/test_derivations.py::test_d[elbo]") != work_unit("tests/test_derivations.py::test_d[vae]")
    assert work_unit("tests/test_cli.py::test_train") != work_unit("tests/test_engine.py::test_train")


def test_loadgroup_is_scheduled_by_work_unit():
    scheduler = pytest_xdist_make_scheduler(Config("loadgroup"), None)
    node = "tests/test_check.py::test_one[vae]"
    assert scheduler._split_scope(node) == work_unit(node) == "tests/test_check.py"
    assert pytest_xdist_make_scheduler(Config("load"), None) is None  # other modes: xdist's own


def test_xla_gets_only_the_flags_its_version_knows():
    """An unknown flag in XLA_FLAGS aborts the process: jaxlib 0.11 lost the fusion-emitter switch that 0.10 has."""
    old, new = xla_flags("0.10.2", worker=False), xla_flags("0.11.2", worker=False)
    assert "--xla_cpu_use_fusion_emitters=false" in old and "--xla_cpu_use_fusion_emitters=false" not in new
    assert "--xla_backend_optimization_level=0" in new  # control: a flag both versions know stays
    assert "--xla_cpu_multi_thread_eigen=false" in xla_flags("0.10.2", worker=True)
    assert "--xla_cpu_multi_thread_eigen=false" not in old
