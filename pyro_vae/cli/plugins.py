"""``--plugin MODULE``: a user's module imported before the parser is built, so that the
families, priors, likelihoods and objectives it registers become choices of the flags."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from pyro_vae.cli.messages import CLIError
from pyro_vae.models import ContractError

PLUGIN_HELP = (
    "import MODULE (a module name or a .py file) first: the families, priors, likelihoods and objectives "
    "it registers become choices (repeatable)"
)


def plugin_flag(p, help_text: str = PLUGIN_HELP) -> None:
    """Add ``--plugin MODULE`` (repeatable) to the command parser ``p``; :func:`load_plugins` reads it."""
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=help_text)


def load_plugins(argv) -> list:
    """Import every ``--plugin MODULE`` of ``argv`` (before the parser is built, so that the
    plugin's registered families and components become choices). Returns the module names."""
    names = []
    for i, a in enumerate(argv):
        if a == "--plugin" and i + 1 < len(argv):
            names.append(argv[i + 1])
        elif a.startswith("--plugin="):
            names.append(a.split("=", 1)[1])
    loaded = []
    for name in names:
        path = Path(name)
        try:
            if path.suffix == ".py":  # a file: import it by path
                _import_file(path)
            else:
                importlib.import_module(name)
        except ContractError as e:  # it imported, and registered something that breaks the contract
            raise CLIError(f"--plugin {name}: {e}") from None
        except Exception as e:  # the user's module: any error in it is the user's to see
            raise CLIError(
                f"--plugin {name}: cannot import it ({type(e).__name__}: {e}). Pass an importable "
                f"module name (on PYTHONPATH) or a path to a .py file"
            ) from None
        loaded.append(str(path.resolve()) if path.suffix == ".py" else name)
    return loaded


def _import_file(path: Path) -> None:
    if not path.is_file():
        raise ImportError(f"no such file {path}")
    mod_name = f"pyro_vae_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
