"""Model families. Every family meets the contract of :mod:`pyro_vae.models.base`.

Built-in: ``vae`` (:class:`VAE`), ``ae`` (the autoencoder as a Pyro program, :class:`AE`), ``ssvae`` (Kingma et al.'s M2, :class:`SSVAE`), ``cvae``
(Sohn et al.'s conditional VAE, :class:`CVAE`), ``hvae`` (L stochastic layers, bottom-up or ladder guide,
:class:`HierarchicalVAE`), ``iaf`` (an inverse-autoregressive-flow guide, :class:`IAFVAE`), ``gmvae`` (a
Gaussian-mixture VAE for clustering, :class:`GMVAE`). A user's family registers the same way::

    @register_model("mine")
    class Mine(Family):
        Config = MineConfig                      # a dataclass of options
        @classmethod
        def from_config(cls, config, data_shape, num_classes=None): ...
        def model(self, x=None): ...            # plain Pyro: sites inside pyro.plate("data", B)
        def guide(self, x): ...                 # beta, warm-up, N/B applied by training (pyro_vae.scaling)
"""

from __future__ import annotations

import dataclasses

from ..config import ModelConfig, from_dict
from ..registry import Registry
from .base import ContractError, Family, check_family, check_family_class, check_options, data_plate, plan, size_fix
from .vae import VAE, VAEConfig

MODELS = Registry("model", check=check_family_class)  # a plugin lacking a part is refused when imported
register_model = MODELS.register  # @register_model("name") on a Family subclass


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
                raise ValueError(f"option {f.name} must be one of {', '.join(map(str, f.metadata['choices']))}, "
                                 f"got {v!r}")
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
    return ModelConfig(model=config.model, data_shape=config.data_shape, num_classes=config.num_classes,
                       options=opts, plugins=config.plugins)


register_model("vae")(VAE)
from .ssvae import SSVAE, SSVAEConfig  # noqa: E402
from .cvae import CVAE, CVAEConfig  # noqa: E402
from .ae import AE, AEConfig  # noqa: E402

register_model("ssvae")(SSVAE)
register_model("cvae")(CVAE)
register_model("ae")(AE)
from .hierarchical import HierarchicalConfig, HierarchicalVAE  # noqa: E402
from .iaf import IAFConfig, IAFVAE  # noqa: E402
from .gmvae import GMVAE, GMVAEConfig  # noqa: E402

register_model("hvae")(HierarchicalVAE)
register_model("iaf")(IAFVAE)
register_model("gmvae")(GMVAE)

__all__ = ["HierarchicalVAE", "HierarchicalConfig", "IAFVAE", "IAFConfig", "GMVAE", "GMVAEConfig",
           "VAE", "VAEConfig", "AE", "AEConfig", "SSVAE", "SSVAEConfig", "CVAE", "CVAEConfig", "Family", "ContractError",
           "check_family", "data_plate", "build_model", "register_model", "MODELS", "model_options",
           "complete_config"]
