"""The version of pyro-vae, written here alone: ``pyproject.toml`` reads it when the package is
built, ``pyro_vae.__version__`` and every run's record (``config.json``) from here. It imports
nothing, so every layer may read it."""

__version__ = "0.2.0"
