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

    def get_or_raise(self, name: str):
        """The entry ``name``, or a ValueError that lists the known names and how to add one."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(sorted(self))}. "
                             f"A {self.kind} of your own: register it in a module and pass --plugin MODULE")
        return self[name]

    def build(self, name: str, *args, **kwargs):
        return self.get_or_raise(name)(*args, **kwargs)
