"""The command line, on top of the library: ``pyro-vae train | evaluate | sample | plot | compare | classify``."""

from pyro_vae.cli.app import main

__all__ = ["main"]
