"""``pyro-vae sample``: a grid of samples of a trained model, z from its prior or from a Gaussian
mixture fitted to the codes of its training images."""

from __future__ import annotations

import math
from pathlib import Path

from pyro_vae.cli.flags import positive_int, seed
from pyro_vae.cli.messages import CLIError
from pyro_vae.cli.plugins import plugin_flag
from pyro_vae.cli.runs import check_name_lengths, data_flags, load_family, load_splits, recorded_data, trained_binarize
from pyro_vae.runs.folder import RunDir

MAX_GRID = 10_000  # samples in one figure


def add_sample_parser(sub, formatter_class):
    """Add the ``sample`` command to the subparsers ``sub``; return its parser."""
    s = sub.add_parser("sample", help="write a grid of samples from the model", formatter_class=formatter_class)
    s.add_argument("checkpoint", help="a checkpoint .pt file (or a run folder: its checkpoint_best.pt)")
    plugin_flag(s)
    s.add_argument("-n", type=positive_int, default=64, help="number of samples")
    s.add_argument(
        "--condition", type=int, default=None, help="a conditional family (conditional = True): the class to draw"
    )
    s.add_argument(
        "--sampler",
        default="prior",
        choices=["prior", "mixture"],
        help="where z comes from: the prior p(z), or a Gaussian mixture fitted to the codes of the "
        "training images (Ghosh et al. 2020; makes an autoencoder generate)",
    )
    s.add_argument("--components", type=positive_int, default=10, help="components of the --sampler mixture")
    data_flags(s, required_default=False)
    s.add_argument(
        "--out", default=None, help="PNG file (default: samples.png, or samples_mixture.png, beside the checkpoint)"
    )
    s.add_argument("--seed", type=seed, default=0, help="seed of the prior draws")
    return s


def cmd_sample(a) -> int:
    from pyro_vae.contract import traits
    from pyro_vae.devices import set_seed
    from pyro_vae.figures.plots import plot_samples

    path = RunDir.checkpoint_path(a.checkpoint)
    family, ckpt = load_family(path, "cpu")
    t = traits(family)
    if a.condition is not None and not t.conditional:
        raise CLIError(f"--condition: this model ({type(family).__name__}) is not conditional; leave --condition out")
    classes = t.num_classes
    if (
        a.condition is not None
        and isinstance(classes, int)
        and t.condition == "class"
        and not 0 <= a.condition < classes
    ):
        raise CLIError(f"--condition {a.condition}: this model has {classes} classes; pass a class in 0..{classes - 1}")
    if a.out is not None:
        check_name_lengths(Path(a.out), "--out", name_room=24, path_room=24)
    if a.out is not None and Path(a.out).is_dir():
        raise CLIError(f"--out {a.out} is a folder; give a file name, e.g. {Path(a.out) / 'samples.png'}")
    if a.n > MAX_GRID:
        raise CLIError(
            f"-n {a.n}: a grid of more than {MAX_GRID} samples is not a figure one can read (and "
            f"needs {a.n * 4 * math.prod(family.data_shape):.2g} bytes); draw at most {MAX_GRID}, or "
            f"use evaluate --generation --num-generated N to score many samples"
        )
    mixture = None
    if a.sampler == "mixture":
        from pyro_vae.analysis.samplers import fit_code_mixture
        from pyro_vae.data.batch import for_evaluation

        if a.condition is not None:
            raise CLIError(
                "--condition and --sampler mixture do not go together: the mixture is fitted to "
                "the codes of an unconditional model"
            )
        name, splits = load_splits(recorded_data(ckpt), a.dataset, a.data_dir, run=RunDir.of_checkpoint(path))
        train = for_evaluation(splits.train, trained_binarize(ckpt))
        mixture = fit_code_mixture(family, train, components=a.components, seed=a.seed)
        print(
            f"fitted a {a.components}-component Gaussian mixture to the codes of {len(train)} {name} "
            f"training images (mean log-likelihood {mixture.log_likelihood:.2f} per code)"
        )
    set_seed(a.seed)
    default = "samples" if a.sampler == "prior" else f"samples_{a.sampler}"
    out = Path(a.out) if a.out else RunDir.of_checkpoint(path).figure(default)
    plot_samples(family, out, n=a.n, condition=a.condition, sampler=a.sampler, mixture=mixture)
    print(f"wrote {out}")
    return 0
