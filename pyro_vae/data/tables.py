"""Tables: a CSV file read with a column schema into the rows a tabular likelihood models, and the
Palmer penguins table.

**The schema** is a tuple of :class:`Column` (name, kind, levels). Kinds: ``real`` (any real
number), ``positive`` (> 0), ``count`` (0, 1, 2, ...), ``categorical`` (one of its ``levels``),
``binary`` (its two ``levels``, or 0/1). :func:`parse_schema` reads one from columns, dicts
(``{"name": "island", "kind": "categorical", "levels": ["Biscoe", "Dream", "Torgersen"]}``) or
short strings (``"island:categorical:Biscoe|Dream|Torgersen"``, ``"mass:positive"``).

**A row** (the ``x`` a model sees, shape ``(D,)``) has one entry per column, except that a
categorical column of K levels takes K entries (one-hot), so a decoder's output has one number
per entry. A missing cell (empty, ``NA``, ``NaN``) is NaN in every entry of its column.

**Units** (:class:`Table`): real columns are standardized, ``(x - mean) / sd``, and positive
columns divided by their geometric mean, both with the training split's statistics; counts,
categories and binaries stay as they are. :meth:`Table.to_original` maps rows back to the
file's units.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pyro_vae.data.batch import Batch, DataError, Splits, first_line, split_positions

logger = logging.getLogger(__name__)

KINDS = ("real", "positive", "count", "categorical", "binary")
MISSING = {"", "na", "nan", "n/a", "null", "none", "?"}  # cells read as missing (any case)


@dataclass(frozen=True)
class Column:
    """One column of a table: its ``name``, ``kind`` (one of :data:`KINDS`) and, for a
    categorical or binary column, the names of its ``levels`` (in code order)."""

    name: str
    kind: str
    levels: tuple = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DataError(f"column {self.name!r}: unknown kind {self.kind!r}; one of {', '.join(KINDS)}")
        levels = tuple(str(v) for v in self.levels)
        object.__setattr__(self, "levels", levels)
        if self.kind == "categorical" and len(levels) < 2:
            raise DataError(f"categorical column {self.name!r} needs at least 2 levels, got {len(levels)}")
        if self.kind == "binary" and len(levels) not in (0, 2):
            raise DataError(f"binary column {self.name!r} has 2 levels (the names of 0 and 1), got {len(levels)}")
        if self.kind in ("real", "positive", "count") and levels:
            raise DataError(f"{self.kind} column {self.name!r} has no levels")
        if len(set(levels)) != len(levels):
            raise DataError(f"column {self.name!r} names a level twice: {', '.join(levels)}")

    @property
    def width(self) -> int:
        """How many entries of a row this column takes (K for a categorical column, else 1)."""
        return len(self.levels) if self.kind == "categorical" else 1

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, **({"levels": list(self.levels)} if self.levels else {})}


def _column(spec) -> Column:
    if isinstance(spec, Column):
        return spec
    if isinstance(spec, dict):
        unknown = set(spec) - {"name", "kind", "levels"}
        if unknown or "name" not in spec or "kind" not in spec:
            raise DataError(f"a schema column is a dict with name, kind and (categorical, binary) levels; got {spec}")
        levels = spec.get("levels", ())
        return Column(str(spec["name"]), str(spec["kind"]), tuple(range(levels)) if isinstance(levels, int) else levels)
    if isinstance(spec, str):
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[0]:
            raise DataError(
                f"schema column {spec!r}: write name:kind or name:kind:LEVELS (levels a count, or "
                f"names separated by |), e.g. island:categorical:Biscoe|Dream|Torgersen"
            )
        levels = (
            ()
            if len(parts) == 2
            else (tuple(range(int(parts[2]))) if parts[2].isdigit() else tuple(parts[2].split("|")))
        )
        return Column(parts[0], parts[1], levels)
    raise DataError(f"a schema column is a Column, a dict or a string name:kind[:levels], got {type(spec).__name__}")


def parse_schema(schema) -> tuple:
    """A tuple of :class:`Column` from ``schema``: Columns, dicts, ``name:kind[:levels]`` strings,
    or one string of those separated by spaces or commas. A DataError names what is wrong."""
    if isinstance(schema, str):
        schema = [s for s in re.split(r"[\s,]+", schema) if s]
    if schema is None or isinstance(schema, (bytes, dict)) or not hasattr(schema, "__iter__"):
        raise DataError(f"a schema is a list of columns (name:kind[:levels]), got {type(schema).__name__}")
    columns = tuple(_column(s) for s in schema)
    if not columns:
        raise DataError("the schema has no columns")
    names = [c.name for c in columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"the schema names column(s) {', '.join(twice)} twice")
    return columns


def row_width(columns) -> int:
    """The number of entries of a row: the sum of the columns' widths."""
    return sum(c.width for c in columns)


def one_hot(codes, levels: int) -> torch.Tensor:
    """Integer codes ``(...,)`` in 0..levels-1 as one-hot rows ``(..., levels)``; a NaN code (a
    missing cell) gives a row of NaN."""
    codes = torch.as_tensor(codes, dtype=torch.get_default_dtype())
    missing = torch.isnan(codes)
    whole = codes[~missing]
    if whole.numel() and ((whole != whole.round()).any() or whole.min() < 0 or whole.max() >= levels):
        raise DataError(
            f"codes must be whole numbers 0..{levels - 1}; got values from {whole.min().item():g} to "
            f"{whole.max().item():g}"
        )
    out = torch.nn.functional.one_hot(codes.nan_to_num(0).long(), levels).to(codes.dtype)
    return out.masked_fill(missing[..., None], float("nan"))


# ---------------------------------------------------------------------- cells to numbers
def _cells_to_entries(cells: list, column: Column, where: str) -> np.ndarray:
    """The ``(N, width)`` entries of one column's text cells in the file's units (NaN: missing)."""
    out = np.full((len(cells), column.width), np.nan)
    for i, cell in enumerate(cells):
        text = cell.strip()
        if text.lower() in MISSING:
            continue
        if column.kind == "categorical" or (column.kind == "binary" and column.levels):
            if text not in column.levels:
                raise DataError(
                    f"{where}, row {i + 1}: column {column.name!r} has value {text!r}, not one of its "
                    f"levels {', '.join(column.levels)}; add it to the schema's levels"
                )
            code = column.levels.index(text)
            if column.kind == "binary":
                out[i, 0] = code
            else:
                out[i] = 0.0
                out[i, code] = 1.0
            continue
        try:
            value = float(text)
        except ValueError:
            raise DataError(
                f"{where}, row {i + 1}: column {column.name!r} ({column.kind}) has value {text!r}, "
                f"not a number; declare it categorical or clean the file"
            ) from None
        problem = {
            "positive": value <= 0,
            "count": value < 0 or value != int(value),
            "binary": value not in (0, 1),
            "real": not np.isfinite(value),
        }[column.kind]
        if problem:
            need = {
                "positive": "a number > 0",
                "count": "a whole number >= 0",
                "binary": "0 or 1",
                "real": "a finite number",
            }[column.kind]
            raise DataError(
                f"{where}, row {i + 1}: column {column.name!r} ({column.kind}) has value {text!r}; it needs {need}"
            )
        out[i, 0] = value
    return out


def infer_schema(header: list, rows: list, skip=()) -> tuple:
    """A schema guessed from a file's cells: a column whose cells are all numbers is ``real``,
    one of two distinct texts ``binary``, one of more ``categorical`` (levels sorted). Declare
    ``positive`` and ``count`` columns yourself."""
    columns = []
    for j, name in enumerate(header):
        if name in skip:
            continue
        values = sorted({r[j].strip() for r in rows if r[j].strip().lower() not in MISSING})
        try:
            [float(v) for v in values]
            columns.append(Column(name, "real"))
        except ValueError:
            columns.append(Column(name, "binary" if len(values) == 2 else "categorical", tuple(values)))
    return tuple(columns)


# ---------------------------------------------------------------------- units
@dataclass
class Table:
    """The columns of a table and how its rows' units became the model's: per entry ``x_model =
    (x - shift) / scale`` (shift the training mean of a real column, scale its sd, or a positive
    column's training geometric mean; 0 and 1 elsewhere)."""

    columns: tuple
    shift: np.ndarray = field(repr=False, default=None)
    scale: np.ndarray = field(repr=False, default=None)

    @classmethod
    def fit(cls, columns, raw: np.ndarray) -> "Table":
        """The units of ``columns`` from ``raw`` rows ``(N, D)`` in the file's units (the training split)."""
        shift, scale, at = np.zeros(raw.shape[1]), np.ones(raw.shape[1]), 0
        for c in columns:
            values = raw[:, at][~np.isnan(raw[:, at])]
            if c.kind == "real" and values.size:
                shift[at] = values.mean()
                scale[at] = values.std() if values.size > 1 and values.std() > 0 else 1.0
            elif c.kind == "positive" and values.size:
                scale[at] = float(np.exp(np.log(values).mean()))
            at += c.width
        return cls(tuple(columns), shift, scale)

    def to_model(self, raw) -> torch.Tensor:
        """Rows in the file's units ``(N, D)`` -> the model's units, a float tensor."""
        return torch.as_tensor(
            (np.asarray(raw, dtype=np.float64) - self.shift) / self.scale, dtype=torch.get_default_dtype()
        )

    def to_original(self, x) -> np.ndarray:
        """Rows in the model's units (a tensor or array ``(..., D)``) -> the file's units."""
        x = x.detach().cpu().double().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float64)
        return x * self.scale + self.shift

    @property
    def schema(self) -> list:
        """The columns as plain dicts (what a tabular likelihood's ``schema`` option takes)."""
        return [c.to_dict() for c in self.columns]

    def describe(self) -> str:
        kinds = {k: sum(c.kind == k for c in self.columns) for k in KINDS}
        said = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
        return (
            f"a table of {len(self.columns)} columns ({said}) in {int(row_width(self.columns))} entries: real "
            f"columns standardized and positive ones divided by their geometric mean (training split), "
            f"categorical ones one-hot, missing cells NaN"
        )


@dataclass
class TableSplits(Splits):
    """:class:`~pyro_vae.data.batch.Splits` of a table, with its :class:`Table` (columns and units).
    ``schema`` is what the tabular likelihood needs (``pyro-vae train`` passes it on)."""

    table: Table | None = None

    @property
    def schema(self) -> list | None:
        return None if self.table is None else self.table.schema


# ---------------------------------------------------------------------- files
def read_csv(path) -> tuple[list, list]:
    """``(header, rows)`` of a CSV file: text cells, every row as long as the header."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read the table {path}: {first_line(e)}") from None
    lines = [r for r in lines if any(cell.strip() for cell in r)]
    if len(lines) < 2:
        raise DataError(f"{path} holds no rows under a header line; a table is a CSV file with a header")
    header, rows = [h.strip() for h in lines[0]], lines[1:]
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise DataError(f"{path}, row {i + 1}: {len(r)} cells but the header names {len(header)} columns")
    return header, rows


def load_table(
    path,
    schema=None,
    label: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.2,
    test_seed: int = 0,
    name: str | None = None,
) -> TableSplits:
    """Read the CSV file ``path`` with ``schema`` (None: :func:`infer_schema` over every column
    but ``label``) into train, validation and test splits.

    ``label`` names a column of class labels: ``y`` holds their codes (levels sorted), and it is not
    part of ``x``. The test split is ``test_fraction`` of the rows drawn with ``test_seed`` (the same
    rows whatever ``seed``), the validation split ``val_fraction`` of the rest drawn with ``seed``.
    Units are fitted on the training split (:class:`Table`). Columns of the file the schema does not
    name are left out."""
    header, rows = read_csv(path)
    columns = parse_schema(schema) if schema is not None else infer_schema(header, rows, skip={label})
    unknown = [c.name for c in columns if c.name not in header] + ([label] if label and label not in header else [])
    if unknown:
        raise DataError(f"{path} has no column {', '.join(map(repr, unknown))}; its columns: {', '.join(header)}")
    raw = np.concatenate(
        [_cells_to_entries([r[header.index(c.name)] for r in rows], c, str(path)) for c in columns], axis=1
    )
    y = None
    if label:
        cells = [r[header.index(label)].strip() for r in rows]
        if any(c.lower() in MISSING for c in cells):
            raise DataError(f"{path}: the label column {label!r} has missing cells; drop those rows or use no label")
        classes = sorted(set(cells))
        y = torch.tensor([classes.index(c) for c in cells])
    rest, test_pos = split_positions(len(rows), test_fraction, test_seed)
    train_pos, val_pos = (rest[p] for p in split_positions(len(rest), val_fraction, seed))
    table = Table.fit(columns, raw[train_pos.numpy()])
    x = table.to_model(raw)

    def part(pos):
        return Batch(x[pos], None if y is None else y[pos])

    name = name or str(Path(path))
    return TableSplits(
        part(train_pos),
        part(val_pos),
        part(test_pos),
        name,
        f"{len(test_pos)} rows held out ({test_fraction:g} of the table, seed {test_seed})",
        table.describe(),
        table=table,
    )


# ---------------------------------------------------------------------- the Palmer penguins
PENGUINS_FILE = "penguins.csv"
PENGUINS_URL = "https://raw.githubusercontent.com/allisonhorst/palmerpenguins/main/inst/extdata/penguins.csv"
PENGUINS_SCHEMA = (
    "island:categorical:Biscoe|Dream|Torgersen",
    "bill_length_mm:real",
    "bill_depth_mm:real",
    "flipper_length_mm:real",
    "body_mass_g:positive",
    "sex:binary:female|male",
    "year:categorical:2007|2008|2009",
)
PENGUINS_LABEL = "species"  # Adelie, Chinstrap, Gentoo: y


def penguins_path(data_dir=None, download: bool = True) -> Path:
    """Where ``penguins.csv`` is: in the installed PyPI package ``palmerpenguins``, else in
    ``data_dir`` (default ``./data``), else downloaded there when ``download`` (a DataError naming
    the file and where to put it when that fails or is off)."""
    spec = importlib.util.find_spec("palmerpenguins")
    if spec is not None and spec.submodule_search_locations:
        shipped = Path(list(spec.submodule_search_locations)[0]) / "data" / PENGUINS_FILE
        if shipped.is_file():
            return shipped
    folder = Path(data_dir) if data_dir is not None else Path("data")
    local = folder / PENGUINS_FILE
    if local.is_file():
        return local
    fix = (
        f"install the package palmerpenguins (pip install 'pyro-vae[tables]'), or save {PENGUINS_FILE} from "
        f"{PENGUINS_URL} as {local}"
    )
    if not download:
        raise DataError(f"the penguins table is not here: {local} is missing and downloading is off; {fix}")
    import urllib.request

    try:
        with urllib.request.urlopen(PENGUINS_URL, timeout=30) as r:
            body = r.read()
        folder.mkdir(parents=True, exist_ok=True)
        local.write_bytes(body)
    except OSError as e:  # URLError, timeouts, a folder that cannot be written
        raise DataError(f"could not download {PENGUINS_FILE} into {folder} ({first_line(e)}); offline? {fix}") from None
    logger.info(f"note: downloaded {PENGUINS_FILE} into {folder}")
    return local


def load_penguins(
    path=None,
    data_dir=None,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = True,
    test_fraction: float = 0.2,
) -> TableSplits:
    """The Palmer penguins (Horst, Hill & Gorman 2020): 344 penguins, species as labels ``y``, and
    as ``x`` their island, four body measurements, sex and year (:data:`PENGUINS_SCHEMA`), 19 cells
    missing in 11 rows. ``path``: your own copy of ``penguins.csv``; otherwise
    :func:`penguins_path` finds it."""
    file = Path(path) if path is not None else penguins_path(data_dir, download)
    return load_table(
        file,
        PENGUINS_SCHEMA,
        label=PENGUINS_LABEL,
        val_fraction=val_fraction,
        seed=seed,
        test_fraction=test_fraction,
        name="penguins",
    )


__all__ = [
    "KINDS",
    "Column",
    "parse_schema",
    "row_width",
    "one_hot",
    "infer_schema",
    "Table",
    "TableSplits",
    "read_csv",
    "load_table",
    "PENGUINS_SCHEMA",
    "penguins_path",
    "load_penguins",
]
