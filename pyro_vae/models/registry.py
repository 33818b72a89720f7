"""The family registry: name -> family class, and building a family from a :class:`ModelConfig`.

Each family file registers its class with ``@register_model("name")``; the package
(``pyro_vae/models/__init__.py``) imports every module of ``pyro_vae/models/`` so the built-in
families register themselves, and a user's family registers the same way in its own module
(``--plugin MODULE``). Here, not in ``__init__``, so family files can import it without a circle.
"""

from __future__ import annotations

import dataclasses

from pyro_vae.config import ModelConfig, from_dict
from pyro_vae.contract import known_as
from pyro_vae.registry import Registry
from pyro_vae.models.base import Family, check_family, check_family_class, check_options, plan, size_fix

MODELS = Registry("model", check=check_family_class)  # a plugin lacking a part is refused when imported


def register_model(name: str):
    """``@register_model("name")`` on a family class: checked (:func:`~pyro_vae.models.base.check_family_class`),
    then buildable by ``name``, the name its messages give it."""

    def deco(cls):
        known_as(cls, name)  # first, so a refusal names it too
        return MODELS.register(name)(cls)

    return deco


def model_options(name: str, options: dict | None = None):
    """The typed ``Config`` of family ``name`` from a dict of options (unknown ones refused).

    Every option must have its field's type (:func:`~pyro_vae.models.base.check_options`: an
    integer for an int, not 2.5 or true; a list of integers for a tuple of sizes; ...). Numeric
    options are sizes and weights: integers (and tuples of them) must be >= 1 and floats >= 0,
    unless the field's metadata sets another ``"min"``."""
    cls = MODELS.get_or_raise(name)
    if not isinstance(options or {}, dict):
        raise ValueError(f"the options of model {name!r} must be a dict, got {type(options).__name__}")
    config = from_dict(cls.Config, check_options(cls.Config, dict(options or {})))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, str) and "choices" in f.metadata and v not in f.metadata["choices"]:
                raise ValueError(f"option {f.name} must be one of {', '.join(f.metadata['choices'])}, got {v!r}")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if "choices" in f.metadata and v not in f.metadata["choices"]:
                raise ValueError(
                    f"option {f.name} must be one of {', '.join(map(str, f.metadata['choices']))}, got {v!r}"
                )
            low = f.metadata.get("min", 1 if isinstance(v, int) else 0)
            if v < low:
                raise ValueError(f"option {f.name} must be >= {low}, got {value}")
    return config


def build_model(config: ModelConfig) -> Family:
    """Build the family a :class:`ModelConfig` describes (used by the CLI and checkpoints).

    Its size is counted first, without allocating (:func:`~pyro_vae.models.base.plan`): a model
    larger than this machine's memory is refused in one line naming the options that made it so."""
    cls = MODELS.get_or_raise(config.model)
    try:
        options = model_options(config.model, config.options)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model {config.model!r}: {e}") from None

    def build():
        return cls.from_config(options, config.data_shape, config.num_classes)

    plan(build, f"model {config.model!r}", size_fix(options, cls.Config, config.num_classes))
    family = build()
    check_family(family)
    return family


def complete_config(config: ModelConfig) -> ModelConfig:
    """The same config with every option of the family spelled out (defaults filled in), as
    checkpoints and ``config.json`` store it: a later change of a default does not change a run."""
    opts = dataclasses.asdict(model_options(config.model, config.options))
    return ModelConfig(
        model=config.model,
        data_shape=config.data_shape,
        num_classes=config.num_classes,
        options=opts,
        plugins=config.plugins,
    )


__all__ = ["MODELS", "register_model", "model_options", "build_model", "complete_config"]
