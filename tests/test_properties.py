"""Property-based tests of the data boundary (hypothesis): random arrays of every shape, dtype,
value range and NaN placement either load correctly (shape and values kept, finite float32) or are
refused with a DataError (a ValueError) whose message is one line naming the file: never another
exception, never a silent NaN."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from pyro_vae.config import read_metrics  # noqa: E402
from pyro_vae.data.batch import (
    MAX_CLASSES,
    Batch,
    DataError,
    binarize,
    select_labels,
    split,  # noqa: E402
    to_float_images,
)
from pyro_vae.data.sources import load_array_file  # noqa: E402

FAST = settings(max_examples=40, deadline=None)

NUMERIC = [np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint16, np.float16, np.float32, np.float64, np.bool_]
NOT_NUMBERS = [np.complex64, np.dtype("<U3"), np.dtype("S2"), np.dtype([("a", "<f4"), ("b", "<i4")]), np.dtype("M8[s]")]
SHAPES = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)
ARRAYS = st.sampled_from(NUMERIC + NOT_NUMBERS).flatmap(lambda dt: hnp.arrays(dt, SHAPES))


def _as_float32(a: np.ndarray):
    """What loading should give before the layout change, or None if it must be refused."""
    if a.dtype.kind not in "biuf":
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        f = a.astype(np.float32)
    if not np.isfinite(f).all():
        return None
    t = torch.from_numpy(f)
    return t / 255.0 if a.dtype == np.uint8 else t


def _layout(t: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N, 1, H, W); (N, H, W, C) with C in 1, 3 -> (N, C, H, W)."""
    if t.dim() == 4 and t.shape[-1] in (1, 3) and t.shape[1] not in (1, 3):
        return t.permute(0, 3, 1, 2)
    return t.unsqueeze(1) if t.dim() == 3 else t


def _loadable(a: np.ndarray) -> bool:
    return a.ndim >= 2 and all(s > 0 for s in a.shape) and _as_float32(a) is not None


def _check_refusal(excinfo_value, path=None):
    message = str(excinfo_value)
    assert isinstance(excinfo_value, DataError) and message and "\n" not in message, message
    if path is not None:
        assert str(path) in message, message


def _roundtrip(write, suffix):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"data{suffix}"
        write(path)
        try:
            return path, load_array_file(path), None
        except DataError as e:
            return path, None, e


# ---------------------------------------------------------------------- files
@FAST
@given(ARRAYS)
def test_npy_loads_exactly_or_is_refused(a):
    path, ds, err = _roundtrip(lambda p: np.save(p, a, allow_pickle=False), ".npy")
    if _loadable(a):
        assert err is None, (a.dtype, a.shape, err)
        expected = _layout(_as_float32(a))
        assert ds.x.dtype == torch.float32 and torch.isfinite(ds.x).all()
        assert ds.x.shape == expected.shape and torch.equal(ds.x, expected)
        if a.dtype in (np.uint8, np.bool_):
            assert 0 <= ds.x.min() and ds.x.max() <= 1
    else:
        assert ds is None, (a.dtype, a.shape)
        _check_refusal(err, path)


LABELS = st.sampled_from([np.int64, np.int32, np.uint8, np.float32, np.float64, np.bool_, np.dtype("<U2")]).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=6))
)


def _labels_ok(y: np.ndarray, n: int) -> bool:
    if y.ndim != 1 or len(y) != n or y.dtype.kind not in "biuf":
        return False
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        return False
    return y.size == 0 or (y.min() >= 0 and y.max() < MAX_CLASSES)  # more classes: ids, not class indices


@FAST
@given(
    hnp.arrays(
        np.float32, hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=5), elements=st.floats(0, 1, width=32)
    ),
    LABELS,
)
def test_npz_labels_load_as_class_indices_or_are_refused(x, y):
    path, ds, err = _roundtrip(lambda p: np.savez(p, x=x, y=y), ".npz")
    if _labels_ok(y, len(x)):
        assert err is None, (y.dtype, y.shape, err)
        assert ds.y.dtype == torch.int64 and ds.y.tolist() == [int(v) for v in y]
        assert len(ds.x) == len(x)
    else:
        assert ds is None, (y.dtype, y.shape, y)
        _check_refusal(err, path)


@FAST
@given(ARRAYS, st.sampled_from(["tensor", "dict", "list", "str", "int"]))
def test_pt_loads_exactly_or_is_refused(a, how):
    tensor = None
    if a.dtype.kind in "biuf" and a.dtype != np.uint16:
        tensor = torch.from_numpy(np.ascontiguousarray(a))

    def write(p):
        obj = {"tensor": tensor, "dict": {"x": tensor}, "list": a.tolist(), "str": "data", "int": 3}[how]
        torch.save(obj, p)

    path, ds, err = _roundtrip(write, ".pt")
    if how in ("tensor", "dict") and tensor is not None and _loadable(a):
        assert err is None, (a.dtype, a.shape, err)
        assert torch.equal(ds.x, _layout(_as_float32(a)))
    else:
        assert ds is None, (how, a.dtype, a.shape)
        _check_refusal(err, path)


@FAST
@given(
    hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=4),
    st.data(),
    st.sampled_from([float("nan"), float("inf"), -float("inf")]),
)
def test_a_nan_anywhere_is_refused_and_located(shape, data, bad):
    a = np.full(shape, 0.5, dtype=np.float32)
    index = tuple(data.draw(st.integers(0, s - 1)) for s in shape)
    a[index] = bad
    path, ds, err = _roundtrip(lambda p: np.save(p, a), ".npy")
    assert ds is None
    _check_refusal(err, path)
    assert f"data point {index[0]}" in str(err) and "NaN or Inf" in str(err)


# ---------------------------------------------------------------------- arrays and tensors
@FAST
@given(ARRAYS)
def test_to_float_images_keeps_values_or_refuses(a):
    expected = _as_float32(a)
    try:
        t = to_float_images(a, "thing")
    except DataError as e:
        assert expected is None, (a.dtype, a.shape, e)
        _check_refusal(e)
        assert "thing" in str(e)
        return
    assert expected is not None, (a.dtype, a.shape)
    assert t.dtype == torch.float32 and t.shape == a.shape and torch.equal(t, expected)


@FAST
@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)),
    st.sampled_from([torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.uint8]),
)
def test_to_float_images_on_tensors(a, dtype):
    with np.errstate(over="ignore", invalid="ignore"):
        src = (
            torch.from_numpy(a).to(dtype)
            if dtype.is_floating_point
            else torch.from_numpy(np.nan_to_num(a, nan=0, posinf=1, neginf=-1).clip(-1e6, 1e6)).to(dtype)
        )
    try:
        t = to_float_images(src, "thing")
    except DataError as e:
        _check_refusal(e)
        assert not torch.isfinite(src.float()).all()
        return
    assert t.dtype == torch.float32 and t.shape == src.shape and torch.isfinite(t).all()


@FAST
@given(
    st.integers(0, 6),
    hnp.array_shapes(min_dims=0, max_dims=3, max_side=3),
    st.lists(st.sampled_from(["y", "labelled", "c"]), unique=True),
    st.integers(-1, 1),
)
def test_batch_fields_must_have_one_entry_per_data_point(n, rest, fields, off):
    x = torch.zeros(n, *rest)
    sizes = {f: max(0, n + off) for f in fields}
    extra = {
        "y": torch.arange(sizes.get("y", 0)),
        "labelled": torch.ones(sizes.get("labelled", 0), dtype=torch.bool),
        "c": torch.zeros(sizes.get("c", 0), 2),
    }
    kwargs = {f: extra[f] for f in fields}
    try:
        b = Batch(x, **kwargs)
    except DataError as e:
        _check_refusal(e)
        assert any(v != n for v in sizes.values())
        return
    assert all(v == n for v in sizes.values())
    if n and "y" in fields:
        idx = torch.randperm(n)[: max(1, n // 2)]
        part = b.subset(idx)
        assert torch.equal(part.y, idx) and len(part) == len(idx) == len(part.x)


@FAST
@given(st.one_of(st.floats(allow_nan=True), st.integers(-2, 2), st.booleans()), st.integers(0, 30))
def test_split_fraction_and_sizes(fraction, n):
    ds = Batch(torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n))
    ok_fraction = not isinstance(fraction, bool) and 0 < fraction < 1
    try:
        train, val = split(ds, fraction, seed=0)
    except DataError as e:
        _check_refusal(e)
        assert not ok_fraction or n < 2 or n - max(1, round(n * fraction)) < 1
        return
    assert ok_fraction and len(train) + len(val) == n and len(train) >= 1 and len(val) >= 1
    assert sorted(torch.cat([train.y, val.y]).tolist()) == list(range(n))
    assert torch.equal(train.x[:, 0].long(), train.y)  # every field sliced alike


@FAST
@given(st.lists(st.integers(0, 4), min_size=1, max_size=40), st.integers(-2, 45))
def test_select_labels_keeps_the_same_number_per_class_or_refuses(labels, num_labels):
    y = torch.tensor(labels)
    ds = Batch(torch.zeros(len(labels), 2), y)
    classes = max(labels) + 1
    counts = torch.bincount(y, minlength=classes)
    possible = num_labels >= 1 and num_labels % classes == 0 and num_labels // classes <= int(counts.min())
    try:
        out = select_labels(ds, num_labels, seed=0)
    except DataError as e:
        _check_refusal(e)
        assert not possible
        return
    assert possible and out.num_labelled == num_labels
    assert torch.bincount(y[out.labelled], minlength=classes).tolist() == [num_labels // classes] * classes


@FAST
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
        elements=st.one_of(
            st.floats(-2, 300, width=32),
            st.floats(0, 1, width=32),
            st.sampled_from([float("nan"), float("inf"), 0.0, 1.0]),
        ),
    )
)
def test_binarize_gives_zeros_and_ones_or_refuses(a):
    x = torch.from_numpy(a)
    try:
        b = binarize(x, seed=0)
    except DataError as e:
        _check_refusal(e)
        assert x.numel() and not (torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1)
        return
    assert b.shape == x.shape and ((b == 0) | (b == 1)).all()


# ---------------------------------------------------------------------- model shapes
_FAMILIES = {}


def _family(shape):
    if shape not in _FAMILIES:
        from pyro_vae.config import ModelConfig
        from pyro_vae.models import build_model

        _FAMILIES[shape] = build_model(ModelConfig(data_shape=shape, latent_dim=2, hidden=(4,)))
    return _FAMILIES[shape]


@FAST
@given(st.sampled_from([(5,), (1, 4, 4), (3, 4, 5)]), hnp.array_shapes(min_dims=1, max_dims=4, max_side=5))
def test_check_shape_accepts_exactly_the_data_shape(shape, x_shape):
    family = _family(shape)
    x = torch.zeros(x_shape)
    try:
        family.check_shape(x)
    except ValueError as e:
        assert tuple(x_shape[1:]) != shape and "expects data of shape" in str(e) and "\n" not in str(e)
        return
    assert tuple(x_shape[1:]) == shape


# ---------------------------------------------------------------------- metrics
ROWS = st.one_of(
    st.fixed_dictionaries({"epoch": st.integers(-1, 5), "train_loss": st.one_of(st.floats(), st.text(max_size=3))}),
    st.lists(st.integers(), max_size=3),
    st.integers(),
    st.text(max_size=5),
    st.none(),
)


@FAST
@given(st.lists(st.one_of(ROWS.map(json.dumps), st.text(max_size=20)), max_size=8), st.binary(max_size=20))
def test_read_metrics_returns_only_rows(lines, tail):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "metrics.jsonl"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n" + tail)
        rows = read_metrics(path)
    for r in rows:
        assert isinstance(r, dict) and isinstance(r["epoch"], int) and r["epoch"] >= 0
        assert r.get("train_loss") is None or isinstance(r["train_loss"], (int, float))
    expected = 0
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(r, dict)
            and isinstance(r.get("epoch"), int)
            and r["epoch"] >= 0
            and not isinstance(r.get("train_loss"), str)
        ):
            expected += 1
    assert expected <= len(rows) <= expected + 1  # + the random tail, should it be a row
