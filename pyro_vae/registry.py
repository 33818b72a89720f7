"""Name -> class registries, so the CLI and checkpoints can build parts by name.

Registering is optional: any module with the right interface plugs into a VAE directly.
"""

from __future__ import annotations


class Registry(dict):
    """A dict of ``name -> builder`` with a decorator to fill it and a checked ``build``."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str):
        """Class (or function) decorator: make it buildable as ``name``."""

        def deco(obj):
            self[name] = obj
            return obj

        return deco

    def build(self, name: str, *args, **kwargs):
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(sorted(self))}")
        return self[name](*args, **kwargs)
