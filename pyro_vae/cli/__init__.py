"""The command line, on top of the library: ``pyro-vae train | evaluate | sample | plot | compare | classify``.

``app`` holds the parser and :func:`main` (the console entry point); one module per command
below it, and below those what the commands share (see ``app``'s docstring)."""

from pyro_vae.cli.app import main

__all__ = ["main"]
