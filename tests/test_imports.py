"""The import rules of docs/ARCHITECTURE.md ("The package template"), read off the source with ``ast``:

* no circle between files (a function-local import counts as much as one at the top);
* no math twin imports the engine, directly or through what it imports: ``theory_jax/*``, the shared cores
  (``practice_torch.diffusion``, ``practice_torch.nets``, ``practice_torch.broadcasting``) and every topic package's
  ``__init__`` (what the spec runner loads) reach no ``practice_torch.engine``, data loader or training adapter.
Each rule has a negative control on a small tree written here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from project import catalogue

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("project", "theory_jax", "practice_torch", "practice_jax", "shared_specs", "benchmarks")
FORBIDDEN_IN_MATH = ("practice_torch.engine", "practice_torch.data", "practice_torch.models", "practice_torch.cli")


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the packages (a package is its __init__)."""
    files = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = path
    return files


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """module -> the project's modules it imports anywhere in its file (relative imports resolved). An import of
    ``a.b.c`` counts as one of the deepest project module it names (``a.b`` when ``c`` is a name in it)."""
    files = module_files(root, packages)

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            targets.update(r for r in map(resolve, names) if r and r != module)
        graph[module] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in graph:
                    continue
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module that loading ``start`` loads -> the module that loads it (to print the chain): what it imports,
    directly or not, and the package ``__init__`` of each (Python runs a package's __init__ before its modules)."""
    seen, todo = {start: ""}, [start]
    while todo:
        v = todo.pop()
        parents = [".".join(v.split(".")[:i]) for i in range(1, v.count(".") + 1)]
        for w in [*graph.get(v, ()), *(p for p in parents if p in graph)]:
            if w not in seen:
                seen[w] = v
                todo.append(w)
    return seen


def chain(seen: dict[str, str], end: str) -> str:
    path = [end]
    while seen[path[-1]]:
        path.append(seen[path[-1]])
    return " -> ".join(reversed(path))


def math_twins(graph: dict[str, set[str]]) -> list[str]:
    """The modules that must load without the engine: theory_jax, the shared cores, every topic's package
    __init__ and its math (``functions``)."""
    topics = {m.split(".")[1] for m in graph if m.startswith("practice_torch.") and m.endswith(".training")}
    topics |= {t.name for t in catalogue.TOPICS}
    cores = ("practice_torch.diffusion", "practice_torch.nets", "practice_torch.broadcasting")
    return sorted(m for m in graph
                  # the command layer: the CLI, which also dispatches `check` (shared_specs/twin_check.py) on purpose
                  if m.startswith("theory_jax") and m not in ("theory_jax.cli", "theory_jax.__main__")
                  or m.startswith(cores)
                  or m.removeprefix("practice_torch.") in topics
                  or any(m == f"practice_torch.{t}.functions" for t in topics))


def engine_imports(graph: dict[str, set[str]]) -> list[str]:
    """'twin: a -> b -> engine' for every math twin that reaches a forbidden module or a training adapter."""
    problems = []
    for twin in math_twins(graph):
        seen = reachable(graph, twin)
        bad = [m for m in seen if m.startswith(FORBIDDEN_IN_MATH) or m.endswith(".training")]
        if bad:
            problems.append(f"{twin}: {chain(seen, sorted(bad)[0])}")
    return problems


CORES = ("practice_torch.nets", "practice_torch.diffusion", "practice_torch.broadcasting", "theory_jax.nets",
         "theory_jax.diffusion", "theory_jax.broadcasting")


def topic_imports_of_cores(graph: dict[str, set[str]], topics: set[str]) -> list[str]:
    """'core: a -> b -> topic' for every shared core (trunks, the diffusion core) that loads a topic's module."""
    problems = []
    for core in sorted(m for m in graph if m.startswith(CORES)):
        seen = reachable(graph, core)
        bad = sorted(m for m in seen if m.split(".")[0] in ("practice_torch", "theory_jax") and m.count(".") >= 1
                     and m.split(".")[1] in topics)
        if bad:
            problems.append(f"{core}: {chain(seen, bad[0])}")
    return problems


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """The project's import graph, read once by the worker that runs this file (not at collection: 1.5 s)."""
    return import_graph(ROOT)


def test_no_import_circle_between_files(graph):
    assert circles(graph) == []


def test_no_math_twin_reaches_the_engine(graph):
    assert engine_imports(graph) == []
    assert {"theory_jax.ddpm", "practice_torch.ddpm", "practice_torch.diffusion"} <= set(math_twins(graph))


def test_the_shared_cores_depend_on_no_topic(graph):
    assert topic_imports_of_cores(graph, {t.name for t in catalogue.TOPICS}) == []


def test_the_topic_packages_that_train_have_a_training_adapter_and_load_without_it(graph):
    """The registry's modules exist, and loading a topic's package (what the spec runner does) loads no engine."""
    from practice_torch.models import MODELS

    for name, (module, _) in MODELS.items():
        assert module == f"practice_torch.{name}.training" and module in graph, name
        assert not any(m.endswith(".training") for m in reachable(graph, f"practice_torch.{name}")), name


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_negative_control_a_circle_through_a_function_local_import_is_caught(tmp_path):
    root = _tree(tmp_path, {
        "practice_torch/__init__.py": "",
        "practice_torch/a.py": "from practice_torch import b\n",
        "practice_torch/b/__init__.py": "def f():\n    from ..a import g\n",
        "practice_torch/c.py": "import practice_torch.a\n",
    })
    graph = import_graph(root, ("practice_torch",))
    assert circles(graph) == [["practice_torch.a", "practice_torch.b"]]


def test_negative_control_a_math_twin_that_reaches_the_engine_is_caught(tmp_path):
    root = _tree(tmp_path, {
        "practice_torch/__init__.py": "",
        "practice_torch/engine/__init__.py": "",
        "practice_torch/engine/loop.py": "",
        "practice_torch/diffusion/__init__.py": "from practice_torch.diffusion.loop import sample_loop\n",
        "practice_torch/diffusion/loop.py": "from practice_torch.progress import bar\n",
        "practice_torch/progress.py": "from practice_torch.engine.loop import Trainer\n",
        "practice_torch/toy/__init__.py": "from practice_torch.toy.functions import f\n",
        "practice_torch/toy/functions.py": "",
        "practice_torch/toy/training.py": "from practice_torch.engine import loop\n",
    })
    problems = engine_imports(import_graph(root, ("practice_torch",)))
    assert problems == ["practice_torch.diffusion: practice_torch.diffusion -> practice_torch.diffusion.loop -> "
                        "practice_torch.progress -> practice_torch.engine.loop -> practice_torch.engine",
                        "practice_torch.diffusion.loop: practice_torch.diffusion.loop -> practice_torch.progress -> "
                        "practice_torch.engine.loop -> practice_torch.engine"]


@pytest.mark.parametrize("package", ["practice_torch.toy"])
def test_negative_control_a_package_init_that_loads_its_training_adapter_is_caught(tmp_path, package):
    root = _tree(tmp_path, {
        "practice_torch/__init__.py": "",
        "practice_torch/toy/__init__.py": "from practice_torch.toy.training import build\n",
        "practice_torch/toy/training.py": "",
    })
    assert engine_imports(import_graph(root, ("practice_torch",))) == [
        f"{package}: {package} -> {package}.training"]


def test_negative_control_a_trunk_that_imports_a_topic_is_caught(tmp_path):
    root = _tree(tmp_path, {
        "practice_torch/__init__.py": "",
        "practice_torch/nets/__init__.py": "from practice_torch.nets.trunk import Trunk\n",
        "practice_torch/nets/trunk.py": "from practice_torch.toy import rope\n",
        "practice_torch/toy.py": "",
    })
    assert topic_imports_of_cores(import_graph(root, ("practice_torch",)), {"toy"}) == [
        "practice_torch.nets: practice_torch.nets -> practice_torch.nets.trunk -> practice_torch.toy",
        "practice_torch.nets.trunk: practice_torch.nets.trunk -> practice_torch.toy"]


# Networks hold weights, not configuration or data -----------------------------------------------------------------
# The adapters that still put what their config or data set chooses on their network, to be emptied (issue 38):
# style_transfer's and domain_adversarial's training pools (the second stream of training images their step draws
# rows of, which the engine does not yet hand a step). A name leaves this set once its adapter no longer does it,
# and the test says so.
COPIES_CONFIG_ONTO_NETWORK: set[str] = set()


def _reads_config_or_data(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id in ("config", "data") for n in ast.walk(node))


def config_copies(source: str) -> list[str]:
    """The lines ``net.X = ...`` (or a tuple of such targets) and ``net.register_buffer(..., persistent=False)``
    whose value reads ``config`` or ``data`` (the build's data set), and a class constructed with the whole
    ``config`` (``Net(lm, config)``, which may keep any of it): a config value or data kept on a network, which the
    step, the sampler or the evaluation should be handed instead. (A checkpointed buffer computed from the config, a
    noise schedule, is a weight of the model; a network is built from the config's architecture values.)"""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id[:1].isupper() \
                and any(isinstance(a, ast.Name) and a.id == "config" for a in node.args):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register_buffer" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "net" \
                and any(k.arg == "persistent" and isinstance(k.value, ast.Constant) and k.value.value is False
                        for k in node.keywords) and any(_reads_config_or_data(a) for a in node.args[1:]):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        if not isinstance(node, ast.Assign):
            continue
        targets = [t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
        on_net = any(isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "net"
                     for t in targets)
        if on_net and _reads_config_or_data(node.value):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return sorted(found, key=lambda line: int(line.split(":")[0].split()[1]))


def test_no_adapter_copies_its_config_onto_the_network():
    copying = {}
    for topic in catalogue.TOPICS:
        if topic.trains:
            path = ROOT / Path(*topic.training_module.split(".")).with_suffix(".py")
            copies = config_copies(path.read_text())
            if copies:
                copying[topic.name] = copies
    unexpected = {k: v for k, v in copying.items() if k not in COPIES_CONFIG_ONTO_NETWORK}
    assert not unexpected, f"hand the step its config instead of copying it onto the network: {unexpected}"
    assert set(copying) == COPIES_CONFIG_ONTO_NETWORK, \
        f"no longer copies config onto its network, take it off the list: {COPIES_CONFIG_ONTO_NETWORK - set(copying)}"


def test_negative_control_a_config_value_or_data_kept_on_a_network_is_caught():
    source = ("def build(config, data):\n    net = Net(config.width)\n    net.r1 = config.r1\n"
              "    net.a, net.b = config.a, 1\n    net.data_name = data.name\n"
              "    net.register_buffer('pool', load(data, config.domain), persistent=False)\n"
              "    net.register_buffer('betas', schedule(config.steps))\n    net.width = 3\n"
              "    pair = Pair(lm, config)\n    lm = build_lm(config, 3)\n    return net\n")
    assert config_copies(source) == ["line 3: net.r1 = config.r1", "line 4: net.a, net.b = (config.a, 1)",
                                     "line 5: net.data_name = data.name",
                                     "line 6: net.register_buffer('pool', load(data, config.domain), persistent=False)",
                                     "line 9: Pair(lm, config)"]


# No module imports another topic's training adapter ---------------------------------------------------------------
# What topics share lives in library modules (``wavenet/clips.py``, ``gan/sampling.py``, ``data/text.py``,
# ``cnf/sampling.py``, ...); a model another one builds on is reached through the registry (``models.get_model``).
# The set of imports still to be moved out is empty: the test holds it so, with the negative control below. Tests are
# not held to it: they exercise the adapters themselves.
ADAPTER_IMPORTS_LEFT: set[tuple[str, str]] = set()


def adapter_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, adapter) for every import of a ``<package>.<topic>.training`` module from outside that topic's
    package (a function-local import counts)."""
    return {(module, target) for module, targets in graph.items() for target in targets
            if target.endswith(".training") and target.count(".") == 2
            and not module.startswith(target.rpartition(".")[0] + ".")}


def test_no_module_imports_another_topics_training_adapter():
    found = adapter_imports(import_graph(ROOT))
    assert not found - ADAPTER_IMPORTS_LEFT, f"move what is shared into a library module: {found - ADAPTER_IMPORTS_LEFT}"
    assert found == ADAPTER_IMPORTS_LEFT, f"no longer imported, take it off the list: {ADAPTER_IMPORTS_LEFT - found}"


def test_negative_control_an_adapter_imported_from_another_topic_is_caught(tmp_path):
    root = _tree(tmp_path, {
        "practice_torch/__init__.py": "",
        "practice_torch/toy/__init__.py": "",
        "practice_torch/toy/training.py": "",
        "practice_torch/toy/clips.py": "",
        "practice_torch/other/__init__.py": "",
        "practice_torch/other/training.py": "def f():\n    from practice_torch.toy import training as t\n",
        "practice_torch/other/networks.py": "from practice_torch.toy.clips import x\n",
    })
    assert adapter_imports(import_graph(root, ("practice_torch",))) == {
        ("practice_torch.other.training", "practice_torch.toy.training")}


# No topic opens another run or trains one while it builds ----------------------------------------------------------
# The runs a model builds on are opened by the engine (``BUILDS_ON``; docs/ARCHITECTURE.md, "Runs built on runs").
REGISTRY_CALLS = {"open_run", "new_trainer", "load_trained", "Trainer"}
REGISTRY_CALLS_LEFT: set[str] = set()  # the list of those still to move to the engine: empty, and held so


def registry_calls(root: Path) -> set[str]:
    """'file: names' for every module of a topic package that imports one of ``REGISTRY_CALLS`` (a function-local
    import counts)."""
    found = set()
    for path in sorted((root / "practice_torch").glob("*/*.py")):
        if path.parent.name == "engine":
            continue
        names = sorted({alias.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)
                        for alias in node.names if alias.name in REGISTRY_CALLS})
        if names:
            found.add(f"{path.relative_to(root).as_posix()}: {', '.join(names)}")
    return found


def test_no_topic_opens_a_run_while_it_builds():
    found = registry_calls(ROOT)
    assert found == REGISTRY_CALLS_LEFT, f"let the engine open it (BUILDS_ON): {found ^ REGISTRY_CALLS_LEFT}"


def test_negative_control_a_topic_that_opens_a_run_is_caught(tmp_path):
    root = _tree(tmp_path, {"practice_torch/toy/training.py": "def build(c, d):\n    from practice_torch.models "
                                                              "import open_run\n    return open_run(c.run)\n",
                            "practice_torch/engine/loop.py": "from practice_torch.engine.runs import load_trained\n"})
    assert registry_calls(root) == {"practice_torch/toy/training.py: open_run"}


def test_what_a_checkpoint_fixes_and_what_sample_may_change_name_fields_of_the_models_config():
    import dataclasses

    from practice_torch.models import MODELS, get_model

    declared = {name: get_model(name) for name in MODELS if hasattr(get_model(name), "ARCHITECTURE")}
    assert set(declared) == set(MODELS), f"declare ARCHITECTURE in {sorted(set(MODELS) - set(declared))}"
    for name, module in declared.items():
        fields = {f.name for f in dataclasses.fields(module.Config)}
        assert set(module.ARCHITECTURE) <= fields, f"{name}: {set(module.ARCHITECTURE) - fields} are not config keys"
        assert set(module.USE) <= fields, f"{name}: {set(module.USE) - fields} are not config keys"
        assert not set(module.USE) & set(module.ARCHITECTURE), f"{name}: {set(module.USE) & set(module.ARCHITECTURE)}"
    assert not {"latent_dims"} <= {f.name for f in dataclasses.fields(declared["vae"].Config)}  # a misspelt key fails


def jax_imports(root: Path) -> list[str]:
    """'module: name' for every import of JAX, flax, optax or the JAX side of the project (theory_jax, the JAX
    trainer practice_jax and its twin training, the twins of shared_specs) anywhere in a practice_torch file, function-local
    ones included."""
    packages = ("jax", "flax", "optax", "diffrax", "theory_jax", "practice_jax")
    modules = ("practice_jax.twin_training", "shared_specs.twins")
    found = []
    for module, path in module_files(root, ("practice_torch",)).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{module}: {n}" for n in names if n.split(".")[0] in packages or n.startswith(modules)]
    return found


def test_practice_torch_imports_no_jax():
    """The arrows go one way: the JAX side (the trainer, the twin checks) reads the PyTorch side's data and runs, and
    practice_torch knows nothing of it. Control: a planted function-local import of jax in a copy is found."""
    assert jax_imports(ROOT) == []
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "practice_torch" / "gan", Path(tmp) / "practice_torch" / "gan")
        planted = Path(tmp) / "practice_torch" / "gan" / "functions.py"
        planted.write_text(planted.read_text() + "\n\ndef planted():\n    import jax.numpy as jnp\n    return jnp\n")
        assert jax_imports(Path(tmp)) == ["practice_torch.gan.functions: jax.numpy"]


# The packages' floors: a module imports only packages on floors below its own (the ground floor, project, from
# everywhere), never one beside it or above. The one exception is a command: `python -m theory_jax check RUN` and
# `exercise` dispatch to shared_specs, which runs both backends.
FLOORS = {"project": 0, "theory_jax": 1, "practice_torch": 1, "shared_specs": 2, "practice_jax": 3, "benchmarks": 4}
COMMANDS = ("theory_jax.cli",)


def upward_imports(root: Path) -> list[str]:
    """'module -> imported' for every import (function-local ones too) of a package on the importing module's floor
    or above it, other than its own package's."""
    found = []
    for module, path in module_files(root, tuple(p for p in FLOORS if (root / p).is_dir())).items():
        own = module.split(".")[0]
        if module in COMMANDS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{module} -> {n}" for n in names
                      if n.split(".")[0] in FLOORS and n.split(".")[0] != own and FLOORS[n.split(".")[0]] >= FLOORS[own]]
    return sorted(found)


def test_every_import_goes_down_a_floor():
    """project (the catalogue, the environment, the comparison) under theory_jax and practice_torch, which know
    nothing of each other, under shared_specs (both backends), under practice_jax (both trainers), under benchmarks.
    Controls: a planted import of practice_jax in a spec file, and of shared_specs in a math module, are found."""
    assert upward_imports(ROOT) == []
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for package in ("project", "shared_specs", "theory_jax"):
            shutil.copytree(ROOT / package, Path(tmp) / package)
        spec, math = Path(tmp) / "shared_specs" / "vae.py", Path(tmp) / "theory_jax" / "ddpm.py"
        spec.write_text(spec.read_text() + "\n\ndef planted():\n    from practice_jax.runs import new_run\n")
        math.write_text(math.read_text() + "\nfrom shared_specs.case import FunctionCase\n")
        assert upward_imports(Path(tmp)) == ["shared_specs.vae -> practice_jax.runs",
                                              "theory_jax.ddpm -> shared_specs.case"]
