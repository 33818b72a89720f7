"""Model families. Every family meets the model contract (:mod:`pyro_vae.contract`).

A family is one file of this package that registers itself; importing the package imports
every module in it (:func:`_import_families`), so a new file is a new family, with no list to
edit. A module that registers nothing (``base``, ``registry``, the shared ``parts``) is only a
helper. ``MODELS`` maps each registered name to its family class; each family class and its
``Config`` are importable from here by their class names. A user's family registers the same
way, in a module of its own (``--plugin MODULE``)::

    @register_model("mine")
    class Mine(Family):
        Config = MineConfig                      # a dataclass of options
        @classmethod
        def from_config(cls, config, data_shape, num_classes=None): ...
        def model(self, x=None): ...            # plain Pyro: sites inside pyro.plate("data", B)
        def guide(self, x): ...                 # beta, warm-up, N/B applied by training (pyro_vae.inference.scaling)
"""

from __future__ import annotations

import importlib
import pkgutil

from pyro_vae.models.base import (
    ContractError,
    Family,
    check_family,
    check_family_class,
    check_options,
    data_plate,
    plan,
    size_fix,
)
from pyro_vae.models.registry import MODELS, build_model, complete_config, model_options, register_model


def _import_families() -> dict:
    """Import every module of this package (each family file registers itself when imported) and
    return ``{class name: class}`` of every registered family and of its ``Config``."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    names = {}
    for cls in MODELS.values():
        names[cls.__name__] = cls
        names[cls.Config.__name__] = cls.Config
    return names


_FAMILIES = _import_families()
globals().update(_FAMILIES)  # `from pyro_vae.models import VAE, VAEConfig` keeps working

__all__ = sorted(_FAMILIES) + [
    "Family",
    "ContractError",
    "check_family",
    "check_family_class",
    "check_options",
    "data_plate",
    "plan",
    "size_fix",
    "build_model",
    "register_model",
    "MODELS",
    "model_options",
    "complete_config",
]
