"""Items: what one data point of a torch ``Dataset`` is, and how a list of them, or a batch a
``DataLoader`` collated, becomes a :class:`~pyro_vae.data.batch.Batch`, at the boundary.

An item is ``x`` alone (a tensor, a NumPy array, a number, a PIL image), a tuple or list
``(x, y)`` or ``(x, y, c)``, or a dict with ``"x"`` (and ``"y"``, ``"c"``; other keys are
ignored). ``x`` of shape ``data_shape`` becomes floats as an array file's does
(:func:`~pyro_vae.data.batch.to_float_images`: uint8 divided by 255, bool 0/1, float64 and
integers cast once, NaN and Inf refused); a PIL image becomes ``(C, H, W)`` (an 8-bit one
scaled to [0, 1], as any uint8 data).
``y`` (one label) becomes an integer tensor, ``c`` (a condition) floats. Anything else is one
:class:`~pyro_vae.data.batch.DataError` naming the item.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from pyro_vae.data.batch import Batch, DataError, numeric_array, to_float_images

ITEMS = (
    "an item is x (a tensor, array, number or PIL image), a tuple (x, y) or (x, y, c), or a dict "
    "with 'x' (and 'y', 'c')"
)


def fields_of(item, what: str) -> tuple:
    """``(x, y, c)`` of one item (``y``, ``c``: None when absent), or a DataError naming ``what``."""
    if isinstance(item, Mapping):
        if "x" not in item:
            keys = ", ".join(repr(k) for k in list(item)[:6])
            raise DataError(f"{what} is a dict without 'x' (its keys: {keys}); {ITEMS}")
        return item["x"], item.get("y"), item.get("c")
    if isinstance(item, (tuple, list)):
        if not 1 <= len(item) <= 3:
            raise DataError(f"{what} is a {type(item).__name__} of {len(item)} entries; {ITEMS}")
        return (*item, None, None)[:3]
    return item, None, None


def _is_image(v) -> bool:
    return type(v).__module__.startswith("PIL.")


def as_array(v, what: str):
    """One field of one item as a tensor or NumPy array (a PIL image as ``(C, H, W)`` uint8)."""
    if torch.is_tensor(v) or isinstance(v, np.ndarray):
        return v
    if isinstance(v, (bool, int, float, np.generic, list, tuple)):
        return np.asarray(v)
    if _is_image(v):
        a = np.asarray(v)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    shown = f" ({v!r:.30})" if isinstance(v, (str, bytes)) else ""
    raise DataError(f"{what} is a {type(v).__name__}{shown}, not numbers; {ITEMS}")


def stack(values: list, what: str, names: list):
    """One field of several items (``names``: what to call each) stacked along a new first axis:
    a tensor when they all are tensors, else a NumPy array."""
    values = [as_array(v, f"{what}: {name}") for v, name in zip(values, names)]
    first = tuple(values[0].shape)
    odd = next((i for i, v in enumerate(values) if tuple(v.shape) != first), None)
    if odd is not None:
        raise DataError(
            f"{what}: {names[odd]} has shape {tuple(values[odd].shape)}, {names[0]} has {first}; every "
            f"data point needs one shape (resize or pad them, e.g. with a transform)"
        )
    if all(torch.is_tensor(v) for v in values):
        return torch.stack([v.detach().cpu() for v in values])
    return np.stack([v.detach().cpu().numpy() if torch.is_tensor(v) else v for v in values])


def as_batch(x, y=None, c=None, what: str = "data") -> Batch:
    """A Batch of stacked fields (``x`` of shape ``(N, *data_shape)``), each cast once at the
    boundary: ``x`` and ``c`` as :func:`~pyro_vae.data.batch.to_float_images` casts an array
    file's, ``y`` integer labels."""
    x = to_float_images(as_array(x, f"{what}: x"), f"{what} (x)")
    if x.dim() < 2:
        raise DataError(
            f"{what}: each x is a single number; a data point is a vector or an image (return x of "
            f"shape (1,) for one feature)"
        )
    if y is not None and not torch.is_tensor(y):
        y = torch.from_numpy(numeric_array(as_array(y, f"{what}: y"), f"{what} (labels y)"))
    if c is not None:
        c = to_float_images(as_array(c, f"{what}: c"), f"{what} (condition c)")
    return Batch(x, y, None, c)


def collate(items: list, what: str, rows=None) -> Batch:
    """Items (see the module docstring) as one Batch, every field checked and cast; ``rows``
    (their positions in the data set) name them in an error."""
    if not items:
        raise DataError(f"{what}: no data points")
    names = [f"item {i}" for i in (range(len(items)) if rows is None else np.asarray(rows).tolist())]
    fields = [fields_of(item, f"{what}: {name}") for item, name in zip(items, names)]
    columns = []
    for k, field in enumerate("xyc"):
        given = [f[k] is not None for f in fields]
        if not all(given) and any(given):
            odd = given.index(not given[0])
            raise DataError(
                f"{what}: {names[odd]} has {'no ' if given[0] else ''}{field!r}, {names[0]} has "
                f"{'one' if given[0] else 'none'}; every item needs the same fields"
            )
        columns.append(stack([f[k] for f in fields], what, [f"{n}'s {field}" for n in names]) if given[0] else None)
    return as_batch(*columns, what=what)


def batch_of(item, what: str) -> Batch:
    """A batch a DataLoader collated (a tensor, a tuple of tensors, a dict of them) as a Batch."""
    return as_batch(*fields_of(item, what), what=what)


def concat(parts: list) -> Batch:
    """Batches one after the other, as one Batch."""
    if len(parts) == 1:
        return parts[0]
    return Batch(
        *(None if getattr(parts[0], f) is None else torch.cat([getattr(p, f) for p in parts]) for f in Batch.FIELDS)
    )


__all__ = ["ITEMS", "fields_of", "as_array", "stack", "as_batch", "collate", "batch_of", "concat"]
