"""Name -> class registries, so the CLI and checkpoints can build parts by name.

Registering is optional: any module with the right interface plugs into a VAE directly. A
registry may check what is registered against its contract (``check``), so that a plugin that
lacks a part is refused when it is imported, in one line, and not deep inside training.
"""

from __future__ import annotations

from pyro_vae.contract import ContractError  # a component that breaks its contract is refused with it


class Registry(dict):
    """A dict of ``name -> builder`` with a decorator to fill it and a checked ``build``.

    ``check(obj)``, when given, runs on every registered object and raises :class:`ContractError`
    naming what it lacks."""

    def __init__(self, kind: str, check=None):
        super().__init__()
        self.kind = kind
        self.check = check

    def register(self, name: str):
        """Class (or function) decorator: make it buildable as ``name``."""

        def deco(obj):
            if self.check is not None:
                self.check(obj)
            self[name] = obj
            return obj

        return deco

    def get_or_raise(self, name: str):
        """The entry ``name``, or a ValueError that lists the known names and how to add one."""
        if name not in self:
            raise ValueError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(sorted(self))}. "
                f"A {self.kind} of your own: register it in a module and pass --plugin MODULE"
            )
        return self[name]

    def build(self, name: str, *args, **kwargs):
        cls = self.get_or_raise(name)
        check_kwargs(cls, kwargs, self.kind)
        return cls(*args, **kwargs)


def overrides(cls, name: str, base) -> bool:
    """Whether class ``cls`` has a callable ``name`` defined below ``base`` (not ``base``'s own
    stub, nor one ``base`` inherits), found along the method resolution order."""
    owner = next((k for k in cls.__mro__ if name in vars(k)), None)
    return owner is not None and not issubclass(base, owner) and callable(getattr(cls, name, None))


def check_component_class(obj, kind: str, needs=("forward",)) -> None:
    """Refuse a registered prior or likelihood that is not a module class defining ``needs``."""
    import inspect

    from torch import nn

    name = getattr(obj, "__name__", type(obj).__name__)
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise ContractError(
            f"{kind} {name} is not an nn.Module class: register a class (subclass torch.nn.Module, "
            f"or pyro_vae.components.likelihoods.Likelihood for a likelihood) that the library builds by name"
        )
    missing = [n for n in needs if not overrides(obj, n, nn.Module)]
    if missing:
        raise ContractError(
            f"{kind} {name} does not define {' or '.join(missing)}: "
            + (
                "forward(params) must return a distribution over one data point and mean(params) "
                "E[x|z]; see docs/vae.md section 6"
                if kind == "likelihood"
                else "forward() must return a distribution over one latent vector; see docs/vae.md section 6"
            )
        )


def check_kwargs(cls, kwargs: dict, kind: str) -> None:
    """Refuse constructor options ``kwargs`` of ``cls`` that it does not name, or whose type is not
    the type of the parameter's default (an int where an int is expected, not 2.5 or "x")."""
    import inspect

    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return
    name = getattr(cls, "__name__", kind)
    named = {n: p for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    # ``**_`` (the library's convention) swallows what a component does not use: a misspelt or
    # another component's option would do nothing without a word
    takes_more = any(p.kind == p.VAR_KEYWORD and p.name != "_" for p in params.values())
    for key, value in kwargs.items():
        p = named.get(key)
        if p is None:
            if takes_more:
                continue
            known = [n for n, q in named.items() if q.default is not q.empty]
            raise ValueError(f"{kind} {name} has no option {key!r} (its options: {', '.join(known) or 'none'})")
        default = p.default
        if default is p.empty or default is None:
            continue
        problem = scalar_problem(value, type(default))
        if problem:
            raise ValueError(f"{kind} {name} option {key} must be {problem}, got {value!r}")


SCALARS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def scalar_problem(value, want) -> str | None:
    """What ``value`` should be if it is not of scalar type ``want`` (bool, int, float or str; an
    int is a float too, a bool is neither, NaN and Inf are not finite numbers), else None. Other
    types are not checked."""
    import math

    if want is bool:
        ok = isinstance(value, bool)
    elif want is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif want is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif want is str:
        ok = isinstance(value, str)
    else:
        return None
    return None if ok else SCALARS[want]
