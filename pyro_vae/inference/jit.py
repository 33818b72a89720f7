"""The TorchScript specialization of the ELBO: :class:`JitTraceELBO`, Pyro's ``JitTrace_ELBO``
with its gradient corrected and, for a family's own reparameterized programs, a lean compiled
graph (traced as a module, specialized to its input shapes, its constants float32).

The graph passes (:func:`_specialize`, :func:`_drop_identities`, :func:`_float32_constants`) change
how the same arithmetic is run, not what it computes; ``tests/test_objectives.py`` compares every
JIT objective's value and gradient with its uncompiled twin. The objectives by name are in
:mod:`pyro_vae.inference.objectives`.
"""

from __future__ import annotations

import functools
import operator
import warnings

import pyro
import torch
from pyro import infer, poutine
from pyro.infer.enum import get_importance_trace
from pyro.poutine.util import prune_subsample_sites
from torch import nn

# torch 2.9+ marks torch.jit.trace deprecated; Pyro's Jit* objectives use it on every compile.
# The warning says nothing a user can act on, so it is silenced for that one message.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated", category=FutureWarning)


def _autocast_state():
    try:
        return tuple(torch.is_autocast_enabled(d) for d in ("cpu", "cuda"))
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled(), torch.is_autocast_enabled()


_TENSOR = object()  # marks a tensor argument of a traced ELBO (the others are baked into the graph)


class _ReparamELBO(nn.Module):
    """-ELBO of one draw of a fully reparameterized guide, as a module for ``torch.jit.trace``:
    ``sum_guide log q - sum_model log p``, each site scaled as Pyro scales it. Without
    score-function terms this is Trace_ELBO's surrogate loss itself: the same value and gradient.
    The family is a submodule, so the traced graph reads its parameters and buffers directly (the
    same tensors the optimizer updates) instead of going through Pyro's param store each step."""

    def __init__(self, family, model, guide, args, kwargs):
        super().__init__()
        self.family = family
        self._programs = (model, guide)
        self._slots = [_TENSOR if torch.is_tensor(a) else a for a in args]
        self._kwargs = kwargs

    def forward(self, *tensors):
        it = iter(tensors)
        args = tuple(next(it) if slot is _TENSOR else slot for slot in self._slots)
        model, guide = self._programs
        guide_trace = poutine.trace(guide).get_trace(*args, **self._kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **self._kwargs)
        return _log_prob_total(guide_trace) - _log_prob_total(model_trace)


def _log_prob_total(trace):
    """The sum of the (scaled) log-densities of a trace's sample sites."""
    trace = prune_subsample_sites(trace)
    trace.compute_log_prob()
    terms = [site["log_prob_sum"] for site in trace.nodes.values() if site["type"] == "sample"]
    return functools.reduce(operator.add, terms) if terms else 0.0


def _reparameterized(model, guide, args, kwargs, max_plate_nesting) -> bool:
    """Run the programs once as Trace_ELBO does (Pyro's shape and model/guide checks included when
    validation is on) and say whether every latent site is drawn by ``rsample`` with nothing
    enumerated: then the -ELBO needs no score-function term."""
    model_trace, guide_trace = get_importance_trace("flat", max_plate_nesting, model, guide, args, kwargs)
    for trace in (model_trace, guide_trace):
        for site in trace.nodes.values():
            if site["type"] == "sample" and site["infer"].get("enumerate"):
                return False
    return all(
        site["fn"].has_rsample
        for site in guide_trace.nodes.values()
        if site["type"] == "sample" and not site["is_observed"]
    )


class JitTraceELBO(infer.JitTrace_ELBO):
    """Pyro's ``JitTrace_ELBO``, with its gradient corrected and, for a family's own programs
    with a fully reparameterized guide, a leaner compiled graph.

    - **Gradient.** Pyro 1.9 returns ``loss + (surrogate - surrogate.detach())`` with ``loss``
      itself carrying gradients inside the compiled graph, so a reparameterized model gets twice
      the gradient (Adam hardly notices; SGD, gradient clipping and gradient-variance measurements
      do). Here ``loss`` is detached: the value is the loss, the gradient the surrogate's, as in
      ``Trace_ELBO``. (``tests/test_objectives.py`` compares every JIT objective's gradient with
      its uncompiled twin.)
    - **Lean graph.** When ``model`` and ``guide`` are methods of one ``nn.Module`` (every
      family), one particle is drawn, and every latent site of the guide is reparameterized with
      nothing enumerated (checked by running the programs once), the -ELBO is traced as a module
      (:class:`_ReparamELBO`): the graph reads the family's parameters directly, with no Pyro
      param-store lookups and no second (surrogate) copy of the sums per step, and runs on
      PyTorch's own autograd formulas (``torch.jit.optimized_execution(False)``). It is the same
      estimator, value and gradient (tests compare both with ``Trace_ELBO``). Anything else, or
      a program that cannot be traced as a module, takes Pyro's compiled path.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs):
        lean = self._lean_graph(model, guide, args, kwargs)
        if lean is not None:
            with torch.jit.optimized_execution(False):
                return lean(*[a for a in args if torch.is_tensor(a)])
        loss, surrogate_loss = self.loss_and_surrogate_loss(model, guide, *args, **kwargs)
        return loss.detach() + (surrogate_loss - surrogate_loss.detach())

    def _lean_graph(self, model, guide, args, kwargs):
        family = getattr(model, "__self__", None)
        if (
            self.num_particles != 1
            or not isinstance(family, nn.Module)
            or getattr(guide, "__self__", None) is not family
        ):
            return None
        if any(torch.is_tensor(v) for v in kwargs.values()):  # would be baked into the graph: Pyro's path
            return None
        try:
            key = (
                model.__func__,
                guide.__func__,
                family.training,
                _autocast_state(),
                tuple(("tensor", a.device, a.dtype) if torch.is_tensor(a) else a for a in args),
                tuple(sorted(kwargs.items())),
            )
            hash(key)
        except TypeError:  # an unhashable argument: Pyro's path
            return None
        programs = self.__dict__.setdefault("_lean_graphs", {})
        entry = programs.get(key)
        if entry is None or entry[0] is not family:
            # first call of these programs: a dict of graphs by input shapes, or None for Pyro's path
            graphs = {} if _reparameterized(model, guide, args, kwargs, self.max_plate_nesting) else None
            programs[key] = entry = (family, graphs)
        graphs = entry[1]
        if graphs is None:
            return None
        shapes = tuple(tuple(a.shape) for a in args if torch.is_tensor(a))
        if shapes not in graphs and len(graphs) >= self.max_specialized:
            shapes = None  # many input shapes: one graph for all of them
        if shapes not in graphs:
            traced = self._trace_lean(family, model, guide, args, kwargs, specialize=shapes is not None)
            if traced is None:  # not traceable as a module: Pyro's path from now on
                programs[key] = (family, None)
                return None
            graphs[shapes] = traced
        return graphs[shapes]

    max_specialized = 8  # input shapes that get a graph of their own (then one graph for the rest)

    def _trace_lean(self, family, model, guide, args, kwargs, specialize=True):
        module = _ReparamELBO(family, model, guide, args, kwargs)
        tensors = tuple(a for a in args if torch.is_tensor(a))
        try:
            with pyro.validation_enabled(False), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation notice
                traced = torch.jit.trace(module, tensors, check_trace=False)
        except RuntimeError:  # e.g. a parameter the family does not own (not traceable as a module)
            return None
        if specialize and not _data_dependent_shapes(traced.graph):
            try:
                _specialize(traced.graph)
            except RuntimeError:  # a pass this torch version refuses: trace again, shape-generic
                return self._trace_lean(family, model, guide, args, kwargs, specialize=False)
        if all(p.dtype == torch.float32 for p in family.parameters()) and all(
            t.dtype != torch.float64 for t in tensors
        ):
            _float32_constants(traced)
        return traced


# operations whose output shape depends on tensor values, not only on input shapes
_VALUE_SHAPED = (
    "aten::index",
    "aten::nonzero",
    "aten::masked_select",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::repeat_interleave",
    "aten::bincount",
    "aten::histc",
    "aten::masked_scatter",
    "aten::index_put",
    "aten::index_put_",
    "aten::nonzero_numpy",
)


def _data_dependent_shapes(graph) -> bool:
    """Whether a traced graph (its submodules' calls included) has an operation whose output
    shape depends on values (a boolean-mask index, ``nonzero``, ...): then a size seen while
    tracing need not hold at the next call with inputs of the same shapes, and the graph is not
    specialized."""
    graph = _inline_all(graph.copy())
    return any(graph.findAllNodes(kind) for kind in _VALUE_SHAPED)


def _inline_all(graph):
    """Inline every submodule call of a traced graph, in place (one nesting level per pass)."""
    for _ in range(32):
        torch._C._jit_pass_inline(graph)
        if not graph.findAllNodes("prim::CallMethod"):
            break
    return graph


def _specialize(graph) -> int:
    """Specialize a traced graph to the input shapes it was traced with (its callers key graphs
    on those shapes): inline the submodules' calls into one graph, replace every ``aten::size``
    of a tensor of known shape by its value, and fold what then becomes constant.

    A traced graph keeps the sizes symbolic: Pyro's plate scale ``num_data / batch_size``, each
    ``reshape(x.shape[0], -1)`` and each ``expand`` recompute them from the tensors at every
    step, as small tensor operations and ``item`` reads (about 50 per step for the VAE), and each
    submodule call is an interpreter frame of its own. At small batches that is several per cent
    of a step. The arithmetic is the same; only its constant part is done once. Returns the
    number of sizes folded."""
    _inline_all(graph)
    folded = 0
    for node in graph.findAllNodes("aten::size"):
        inputs = list(node.inputs())
        sizes = getattr(inputs[0].type(), "sizes", lambda: None)()
        if len(inputs) != 2 or sizes is None or inputs[1].node().kind() != "prim::Constant":
            continue
        dim = inputs[1].toIValue()
        if not isinstance(dim, int) or sizes[dim] is None:
            continue
        const = graph.insertConstant(int(sizes[dim]))
        const.node().moveBefore(node)
        node.output().replaceAllUsesWith(const)
        node.destroy()
        folded += 1
    torch._C._jit_pass_constant_propagation(graph)
    _drop_identities(graph)
    torch._C._jit_pass_dce(graph)
    return folded


def _tensor_shape(value):
    """``(sizes, dtype)`` of a graph value of complete tensor type, else None."""
    t = value.type()
    if not isinstance(t, torch._C.TensorType):
        return None
    sizes, dtype = t.sizes(), t.scalarType()
    return None if sizes is None or None in sizes or dtype is None else (tuple(sizes), dtype)


def _drop_identities(graph) -> int:
    """Remove operations that, at the graph's now known shapes, return their input unchanged:
    ``expand``/``reshape``/``view`` to the shape the tensor has, ``broadcast_tensors`` of tensors
    of one shape (distributions broadcast their parameters), multiplication by a constant 1
    (Pyro's default scale). Each was an operation and an autograd node per step. Returns how many
    were removed."""
    removed = 0

    def bypass(output, source):
        nonlocal removed
        if _tensor_shape(output) is not None and _tensor_shape(output) == _tensor_shape(source):
            output.replaceAllUsesWith(source)
            removed += 1

    for kind in ("aten::expand", "aten::reshape", "aten::view"):
        for node in graph.findAllNodes(kind):
            bypass(node.output(), next(node.inputs()))
    for node in graph.findAllNodes("aten::mul"):
        a, b = node.inputs()
        for const, other in ((a, b), (b, a)):
            if const.node().kind() == "prim::Constant" and isinstance(const.type(), torch._C.TensorType):
                value = const.toIValue()
                if (torch.is_tensor(value) and value.dim() == 0 or isinstance(value, (int, float))) and float(
                    value
                ) == 1.0:
                    bypass(node.output(), other)
                    break
    for node in graph.findAllNodes("aten::broadcast_tensors"):
        listed, users = next(node.inputs()).node(), [u.user for u in node.output().uses()]
        if listed.kind() != "prim::ListConstruct" or len(users) != 1 or users[0].kind() != "prim::ListUnpack":
            continue
        for source, output in zip(listed.inputs(), users[0].outputs()):
            bypass(output, source)
    return removed


def _float32_constants(traced) -> int:
    """Store the traced graphs' number constants (``x * 0.5``, ``+ 1e-4``, ...) as float32.

    Tracing records each Python number as a float64 0-d tensor; run against float32 tensors it is
    cast to float32 on every use, forward and backward (about 40 small copies per step, several
    per cent of a small network's step). Eager PyTorch computes with the number in float32 too,
    so only the cast is saved. Applied only when the family and its inputs are float32 (a float64
    model keeps its float64 constants). Returns how many constants were converted."""
    converted = 0
    for sub in traced.modules():
        try:
            graph = sub.graph
        except (AttributeError, RuntimeError):  # a submodule the programs never called
            continue
        for node in list(graph.findAllNodes("prim::Constant")):
            if not node.hasAttribute("value") or node.kindOf("value") != "t":
                continue
            value = node.t("value")
            if value.dim() == 0 and value.dtype == torch.float64:
                new = graph.insertConstant(value.float())
                new.node().moveBefore(node)
                node.output().replaceAllUsesWith(new)
                node.destroy()
                converted += 1
    return converted


def compiles(objective) -> bool:
    """Whether ``objective`` compiles with ``pyro.ops.jit`` (Pyro's ``Jit*`` objectives and :class:`JitTraceELBO`)."""
    return type(objective).__name__.startswith("Jit")


def compiled_count(objective) -> int:
    """How many graphs ``objective``'s ``pyro.ops.jit`` functions and lean graphs have compiled so far."""
    from pyro.ops.jit import CompiledFunction

    lean = vars(objective).get("_lean_graphs", {}).values()  # the check run of each program, its graphs
    return sum(len(v.compiled) for v in vars(objective).values() if isinstance(v, CompiledFunction)) + sum(
        1 + len(graphs or ()) for _, graphs in lean
    )


__all__ = ["JitTraceELBO", "compiles", "compiled_count"]
