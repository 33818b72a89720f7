"""``pyro-vae train``'s model flags: ``--model``, every registered family's options (the fields
of its ``Config``) and the constructor options of the registered priors and likelihoods
(``--prior-OPTION``, ``--likelihood-OPTION``); and the :class:`~pyro_vae.config.ModelConfig`
they make, refusing an option of another family or component."""

from __future__ import annotations

import inspect

from pyro_vae.cli.flags import REGISTRIES, flag_kwargs, value_flag
from pyro_vae.cli.messages import CLIError
from pyro_vae.components.likelihoods import LIKELIHOODS
from pyro_vae.components.priors import PRIORS
from pyro_vae.config import DEFAULT_MODEL, ModelConfig, field_default
from pyro_vae.models import MODELS
from pyro_vae.models.base import config_fields

COMPONENTS = {"prior": PRIORS, "likelihood": LIKELIHOODS}
SKIP_ARGS = {"self", "latent_dim", "data_shape"}  # filled in by the family, not options
ALIASES = {"prior-components": ["--mixture-components"], "likelihood-learn-scale": ["--learn-scale"]}


def model_flags(t) -> None:
    """Add the model flags to the command parser ``t``. A family option's dest is ``opt_NAME``, a
    component option's ``prior_NAME`` or ``likelihood_NAME``; all default to None (not given)."""
    g = t.add_argument_group("model", "the family and its options (each applies to the families named)")
    g.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS), help="model family")
    for name, (config, field, help_text, per_family) in _family_options().items():
        registered = f" (registered: {', '.join(sorted(REGISTRIES[name]))})" if name in REGISTRIES else ""
        kw = flag_kwargs(config, field, f"{help_text}{registered} [{_defaults_text(per_family)}]".strip())
        if "action" not in kw:
            kw["metavar"] = "N" if "nargs" in kw else name.upper()
        g.add_argument("--" + name.replace("_", "-"), dest=f"opt_{name}", **kw)
    for kind in COMPONENTS:
        g = t.add_argument_group(f"{kind} options", f"constructor options of the registered {kind}s")
        for name, (default, per) in _component_options(kind).items():
            flag = f"{kind}-{name.replace('_', '-')}"
            kw = _component_flag(default, f"option of the {kind}(s) {_defaults_text(per)}")
            g.add_argument("--" + flag, *ALIASES.get(flag, []), dest=f"{kind}_{name}", **kw)


def _family_options():
    """``{field name: (its family's Config, the field, help, {family: default})}`` over all
    families (the first family to declare a name sets its type)."""
    options = {}
    for fam, cls in MODELS.items():
        for f in config_fields(cls.Config):
            if f.name in ("prior_kwargs", "likelihood_kwargs"):
                continue
            entry = options.setdefault(f.name, [cls.Config, f, f.metadata.get("help", "") or f"option of {fam}", {}])
            entry[3][fam] = field_default(f)
    return options


def _component_options(kind: str):
    """``{option: (default, {component: default})}`` from the constructors of the registered
    priors or likelihoods (their keyword options)."""
    options = {}
    for name, cls in COMPONENTS[kind].items():
        try:
            params = inspect.signature(cls).parameters
        except (TypeError, ValueError):
            continue
        for p in params.values():
            if p.name in SKIP_ARGS or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.default is p.empty:
                continue
            options.setdefault(p.name, [p.default, {}])[1][name] = p.default
    return options


def _takes(cls, name: str) -> bool:
    """Whether the component class ``cls`` takes the constructor option ``name``."""
    try:
        return cls is not None and name in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _component_flag(default, help_text: str) -> dict:
    """argparse keywords for a prior's or likelihood's constructor option (its default's type)."""
    if isinstance(default, (tuple, list)):
        return value_flag(tuple, type(default[0]) if default else str, help_text)
    return value_flag(type(default), None, help_text)


def _defaults_text(per_family: dict) -> str:
    vals = {repr(v) for v in per_family.values()}
    if len(vals) == 1:
        return f"{', '.join(per_family)}; default {next(iter(per_family.values()))!r}"
    return "; ".join(f"{fam} default {v!r}" for fam, v in per_family.items())


def model_config_from_args(a, data_shape, num_classes, plugins=(), schema=None) -> ModelConfig:
    """The chosen family's options from the flags; a flag of another family is an error. The
    options are checked once, where the model is built (:func:`pyro_vae.models.build_model`); its
    message names the option, and the CLI's ``main`` says the flag instead. ``schema``: the
    columns a table carries (``TableSplits.schema``), given to a likelihood that takes a
    ``schema`` option when ``--likelihood-schema`` is not."""
    cls = MODELS.get_or_raise(a.model)
    fields = {f.name for f in config_fields(cls.Config)}
    given = {k[4:]: v for k, v in vars(a).items() if k.startswith("opt_") and v is not None}
    foreign = sorted(set(given) - fields)
    if foreign:
        raise CLIError(
            f"--{', --'.join(n.replace('_', '-') for n in foreign)}: not an option of --model {a.model} "
            f"(its options: {', '.join('--' + n.replace('_', '-') for n in sorted(fields)) or 'none'})"
        )
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    _refuse_inert_options(cls, options, getattr(a, "typed", {}))
    for kind in COMPONENTS:
        if f"{kind}_kwargs" not in fields:
            continue
        chosen = options.get(kind, field_default(next(f for f in config_fields(cls.Config) if f.name == kind)))
        kwargs = {}
        for name, (_, per) in _component_options(kind).items():
            value = getattr(a, f"{kind}_{name}", None)
            if value is None:
                continue
            if chosen not in per:
                raise CLIError(
                    f"--{kind}-{name.replace('_', '-')} is an option of the {kind}(s) "
                    f"{', '.join(sorted(per))}, not of --{kind} {chosen}"
                )
            kwargs[name] = value
        if kind == "likelihood" and schema is not None and _takes(COMPONENTS[kind].get(chosen), "schema"):
            kwargs.setdefault("schema", schema)
        options[f"{kind}_kwargs"] = kwargs
    return ModelConfig(model=a.model, data_shape=data_shape, num_classes=num_classes, options=options, plugins=plugins)


def _refuse_inert_options(cls, options: dict, typed: dict) -> None:
    """A family option typed on the command line that its ``only_with`` says does nothing with
    the other options given (``--noise-rate`` without ``--noise``): one line, before any work."""
    fields = {f.name: f for f in config_fields(cls.Config)}
    for name, f in fields.items():
        needs, flag = f.metadata.get("only_with"), typed.get(f"opt_{name}")
        for other, allowed in (needs or {}).items() if flag else ():
            if options.get(other, field_default(fields[other])) not in allowed:
                want = f"--no-{other}" if allowed == (False,) else f"--{other} {' or '.join(map(str, allowed))}"
                raise CLIError(
                    f"{flag} does nothing here: it needs {want.replace('_', '-')}; leave it out or add what it needs"
                )
