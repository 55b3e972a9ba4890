"""The two backends a spec case runs in: the only part of ``shared_specs`` that imports a framework.

Each backend turns a case's NumPy inputs into its own arrays, calls the twin function or module
by name, and returns NumPy pytrees. Full precision is forced here (docs/ARCHITECTURE.md rule 4):
``jax_enable_x64``, ``jax_default_matmul_precision='highest'``, no TF32 in torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from project.compare import flatten
from shared_specs.case import FunctionCase, ModuleCase, StepCase
from shared_specs.interop import flax_to_torch, split_statistics, torch_to_flax


def _topic(case_id: str) -> str:
    return case_id.split("/", 1)[0]


def _nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def _nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def _set_paths(tree: Any, paths: tuple[str, ...], fn: Callable[[np.ndarray], np.ndarray]) -> Any:
    """``tree`` with ``fn`` applied to the leaves at the flattened ``paths`` (see compare.flatten)."""
    if not paths:
        return tree
    if not isinstance(tree, (dict, list, tuple)):
        return fn(tree) if "<root>" in paths else tree

    def walk(node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{prefix}/{k}" if prefix else str(k)) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(walk(v, f"{prefix}/{i}" if prefix else str(i)) for i, v in enumerate(node))
        return fn(node) if prefix in paths else node

    return walk(tree, "")


class TorchBackend:
    name = "torch"

    def __init__(self) -> None:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self.torch = torch

    def _tensor(self, x: np.ndarray, requires_grad: bool = False):
        if isinstance(x, list):  # an input that is a list of arrays (the synthesis network's noise, one per layer)
            return [self._tensor(v, requires_grad) for v in x]
        t = self.torch.from_numpy(np.array(x, copy=True))
        return t.requires_grad_(requires_grad) if requires_grad else t

    def _numpy(self, tree: Any) -> Any:
        if isinstance(tree, dict):
            return {k: self._numpy(v) for k, v in tree.items()}
        if isinstance(tree, (list, tuple)):
            return type(tree)(self._numpy(v) for v in tree)
        return tree.detach().cpu().numpy() if isinstance(tree, self.torch.Tensor) else np.asarray(tree)

    def _leaves(self, tree: Any) -> list:
        return list(flatten(tree).values())

    # functions ---------------------------------------------------------------------------------
    def _fn(self, case: FunctionCase) -> Callable:
        return getattr(importlib.import_module(f"practice_torch.{_topic(case.id)}"), case.fn)

    def function(self, case: FunctionCase, inputs: Mapping[str, np.ndarray], fn: Callable | None = None) -> Any:
        """``fn`` (default: the case's function in ``practice_torch``) on the inputs, without a graph."""
        fn = fn or self._fn(case)
        with self.torch.no_grad():
            return self._numpy(fn(**{k: self._tensor(v) for k, v in inputs.items()}, **case.static))

    def function_vjp(self, case: FunctionCase, inputs: Mapping[str, np.ndarray], cotangent: Any,
                     fn: Callable | None = None) -> dict:
        """{name: the gradient of <fn's output, cotangent>} for the inputs in ``case.grad_wrt``."""
        fn = fn or self._fn(case)
        args = {k: self._tensor(v, requires_grad=k in case.grad_wrt) for k, v in inputs.items()}
        out = self._leaves(fn(**args, **case.static))
        cot = [self._tensor(c) for c in flatten(cotangent).values()]
        # outputs computed without the graph (state a function hands back, as spectral normalisation's u and v)
        # contribute nothing, as JAX's stop_gradient'ed outputs contribute zeros to its vjp
        live = [(o, c) for o, c in zip(out, cot) if o.requires_grad]
        grads = self.torch.autograd.grad([o for o, _ in live], [args[k] for k in case.grad_wrt], [c for _, c in live],
                                         allow_unused=True, materialize_grads=True)
        return {k: g.numpy() for k, g in zip(case.grad_wrt, grads)}

    # modules -----------------------------------------------------------------------------------
    def build(self, case: ModuleCase | StepCase, weights: Mapping[str, np.ndarray] | None = None):
        cls = getattr(importlib.import_module(f"practice_torch.{_topic(case.id)}"), case.module)
        module = cls(**case.config).to(getattr(self.torch, case.dtype))
        if weights is not None:
            module.load_state_dict({k: self._tensor(v) for k, v in weights.items()}, strict=True)
        if getattr(case, "train", None) is not None:
            module.train(case.train)
        return module

    def schema(self, case: ModuleCase | StepCase) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the module's ``state_dict``: the weight layout of the exchange."""
        return {k: tuple(v.shape) for k, v in self.build(case).state_dict().items()}

    def module(self, case: ModuleCase, weights: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]) -> Any:
        module = self.build(case, weights)
        with self.torch.no_grad():
            return self._numpy(getattr(module, case.method)(**{k: self._tensor(v) for k, v in inputs.items()},
                                                            **case.static))

    def module_vjp(self, case: ModuleCase, weights, inputs, cotangent) -> dict:
        module = self.build(case, weights).requires_grad_(True)  # every weight, frozen ones too, as JAX sees them
        args = {k: self._tensor(v, requires_grad=k in case.grad_wrt) for k, v in inputs.items()}
        out = self._leaves(getattr(module, case.method)(**args, **case.static))
        cot = [self._tensor(c) for c in flatten(cotangent).values()]
        names = [n for n, _ in module.named_parameters()]
        wrt = [p for _, p in module.named_parameters()] + [args[k] for k in case.grad_wrt]
        # a weight off every path to the output (WaveNet's last residual 1x1, frozen) has gradient 0, as in JAX
        grads = self.torch.autograd.grad(out, wrt, cot, allow_unused=True, materialize_grads=True)
        return {"params": {n: g.numpy() for n, g in zip(names, grads)},
                "inputs": {k: g.numpy() for k, g in zip(case.grad_wrt, grads[len(names):])}}

    def steps(self, case: StepCase, weights, batches) -> dict[str, np.ndarray]:
        module = self.build(case, weights)
        opt = case.optimizer
        cls = {"adam": self.torch.optim.Adam, "adamw": self.torch.optim.AdamW}[opt["name"]]
        optimizer = cls(module.parameters(), lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"],
                        weight_decay=opt.get("weight_decay", 0.0), foreach=False)
        for batch in batches:
            optimizer.zero_grad()
            getattr(module, case.method)(**{k: self._tensor(v) for k, v in batch.items()}, **case.static).backward()
            optimizer.step()
        return {k: v.detach().numpy() for k, v in module.state_dict().items()}


class JaxBackend:
    name = "jax"

    def __init__(self) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_default_matmul_precision", "highest")
        self.jax = jax
        self.jnp = jax.numpy
        self._templates: dict = {}  # (case, input shapes) -> the flax variables' shapes (``_template``)

    def _numpy(self, tree: Any) -> Any:
        return self.jax.tree.map(np.asarray, tree)

    def _fn(self, case: FunctionCase) -> Callable:
        return getattr(importlib.import_module(f"theory_jax.{_topic(case.id)}"), case.fn)

    def _vjp(self, f: Callable, primals: list, cotangent: Any) -> tuple[Any, tuple]:
        """(f(*primals), the gradients of <f(*primals), cotangent> w.r.t. each primal), compiled as one program.

        ``cotangent``: the torch output's structure, flattened as ``compare.flatten`` does; its leaves, in order, fill
        the JAX output's structure (known once ``f`` is traced: ``f`` is traced once, the costly part for a U-Net)."""
        jax = self.jax
        leaves = [self.jnp.asarray(c) for c in flatten(cotangent).values()]

        def value_and_vjp(primals, leaves):
            out, vjp = jax.vjp(f, *primals)
            structure = jax.tree.structure(out)
            if structure.num_leaves != len(leaves):
                raise ValueError(f"the JAX output has {structure.num_leaves} arrays where the torch output has "
                                 f"{len(leaves)}")
            return out, vjp(jax.tree.unflatten(structure, leaves))

        return jax.jit(value_and_vjp)(primals, leaves)

    # functions (each compiled whole by jax.jit: one XLA program instead of one per operation) ----
    def function(self, case: FunctionCase, inputs: Mapping[str, np.ndarray], fn: Callable | None = None) -> Any:
        fn, static = fn or self._fn(case), dict(case.static)
        compiled = self.jax.jit(lambda arrays: fn(**arrays, **static))
        return self._numpy(compiled({k: self.jnp.asarray(v) for k, v in inputs.items()}))

    def function_vjp(self, case: FunctionCase, inputs, cotangent, fn: Callable | None = None) -> tuple[Any, dict]:
        """(output, {name: gradient of <output, cotangent>} for the inputs in ``case.grad_wrt``)."""
        fn = fn or self._fn(case)
        fixed = {k: self.jnp.asarray(v) for k, v in inputs.items() if k not in case.grad_wrt}

        def f(*wrt):
            return fn(**fixed, **dict(zip(case.grad_wrt, wrt)), **case.static)

        out, grads = self._vjp(f, [self.jnp.asarray(inputs[k]) for k in case.grad_wrt], cotangent)
        return self._numpy(out), {k: np.asarray(g) for k, g in zip(case.grad_wrt, grads)}

    # modules -----------------------------------------------------------------------------------
    def build(self, case: ModuleCase | StepCase):
        import flax.linen

        cls = getattr(importlib.import_module(f"theory_jax.{_topic(case.id)}"), case.module)
        module = cls(**case.config)
        assert isinstance(module, flax.linen.Module), f"{case.module} is not a flax module"
        return module

    def _template(self, case: ModuleCase | StepCase, inputs) -> dict:
        """The shapes of the module's flax variables: {'params': ..., and 'batch_stats' where it has batch norms}.
        Traced once per case and input shapes (``params`` and ``statistics`` both need it)."""
        key = (case.id, case.module, case.method, repr(case.config), repr(case.static), repr(self._mode(case)),
               repr({k: self.jax.tree.map(lambda a: (np.shape(a), np.asarray(a).dtype.str), v)
                     for k, v in sorted(inputs.items())}))
        if key not in self._templates:
            module = self.build(case)
            args = {**self._inputs(case, inputs), **self._mode(case), **case.static}
            self._templates[key] = self.jax.eval_shape(
                lambda: module.init(self.jax.random.key(0), **args, method=self._method(module, case)))
        return self._templates[key]

    def params(self, case: ModuleCase | StepCase, weights: Mapping[str, np.ndarray], inputs) -> dict:
        """The case's torch-layout ``weights`` converted to this module's flax params (running statistics apart)."""
        return torch_to_flax(split_statistics(weights)[0], self._template(case, inputs)["params"])

    def statistics(self, case: ModuleCase, weights: Mapping[str, np.ndarray], inputs) -> dict | None:
        """The torch buffers ``running_mean``/``running_var`` as flax's ``batch_stats``; None for a module without."""
        template = self._template(case, inputs)
        return torch_to_flax(split_statistics(weights)[1], template["batch_stats"]) if "batch_stats" in template else None

    def _mode(self, case) -> dict:
        """The ``train`` keyword of a module with batch norms (``ModuleCase.train``), or nothing."""
        train = getattr(case, "train", None)
        return {} if train is None else {"train": train}

    def _method(self, module, case):
        return None if case.method == "__call__" else getattr(type(module), case.method)

    def _inputs(self, case, inputs) -> dict:
        return {k: self.jax.tree.map(self.jnp.asarray, _nchw_to_nhwc(v) if k in case.image_inputs else v)
                for k, v in inputs.items()}

    def _apply(self, case: ModuleCase, module, params, args, stats=None):
        method, args = self._method(module, case), {**args, **case.static}
        if stats is None:
            out = module.apply({"params": params}, **args, method=method)
        elif case.train is None:  # running statistics read, never updated (StyleGAN's tracked mean style)
            out = module.apply({"params": params, "batch_stats": stats}, **args, method=method)
        elif case.train:  # batch statistics; the running ones are updated (and discarded here)
            out, _ = module.apply({"params": params, "batch_stats": stats}, **args, train=True, method=method,
                                  mutable=["batch_stats"])
        else:
            out = module.apply({"params": params, "batch_stats": stats}, **args, train=False, method=method)
        return _set_paths(out, case.image_outputs, lambda x: self.jnp.moveaxis(x, -1, 1))

    def module_vjp(self, case: ModuleCase, params: Mapping, inputs, cotangent, torch_schema,
                   stats: Mapping | None = None) -> tuple[Any, dict]:
        """(output, {'params': gradients in the torch layout, 'inputs': gradients for ``case.grad_wrt``}).
        ``stats``: the module's ``batch_stats`` (``statistics``), held fixed."""
        module = self.build(case)
        args = self._inputs(case, inputs)
        fixed = {k: v for k, v in args.items() if k not in case.grad_wrt}

        def f(p, *wrt):
            return self._apply(case, module, p, {**fixed, **dict(zip(case.grad_wrt, wrt))}, stats)

        out, (gp, *gx) = self._vjp(f, [params, *[args[k] for k in case.grad_wrt]], cotangent)
        gx = {k: np.asarray(_nhwc_to_nchw(np.asarray(g)) if k in case.image_inputs else g)
              for k, g in zip(case.grad_wrt, gx)}
        schema = split_statistics(torch_schema)[0]  # gradients exist for parameters, not for running statistics
        return self._numpy(out), {"params": flax_to_torch(self._numpy(gp), schema), "inputs": gx}

    def steps(self, case: StepCase, params: Mapping, batches, torch_schema) -> dict[str, np.ndarray]:
        import optax

        module = self.build(case)
        opt = case.optimizer
        b1, b2 = opt["betas"]
        if opt["name"] == "adam":
            tx = optax.adam(opt["lr"], b1=b1, b2=b2, eps=opt["eps"])
        else:
            tx = optax.adamw(opt["lr"], b1=b1, b2=b2, eps=opt["eps"], weight_decay=opt.get("weight_decay", 0.0))
        params = self.jax.tree.map(self.jnp.asarray, params)
        state = tx.init(params)
        method = self._method(module, case)

        def loss(p, args):
            return module.apply({"params": p}, **args, **case.static, method=method)

        @self.jax.jit
        def step(params, state, args):
            updates, state = tx.update(self.jax.grad(loss)(params, args), state, params)
            return optax.apply_updates(params, updates), state

        for batch in batches:
            params, state = step(params, state, self._inputs(case, batch))
        return flax_to_torch(self._numpy(params), torch_schema)
