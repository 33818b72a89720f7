"""``pyro-vae evaluate``: a checkpoint on the test (or validation) split: ELBO, log p(x), the IWAE
bound, active units and the family's own measures; with ``--generation``, scores of its samples."""

from __future__ import annotations

import math

from pyro_vae.cli.flags import device_flag, nonneg_int, positive_int, seed
from pyro_vae.cli.messages import CLIError
from pyro_vae.cli.plugins import plugin_flag
from pyro_vae.cli.runs import (
    data_flags,
    device_of,
    eval_split,
    load_family,
    load_splits,
    recorded_data,
    trained_binarize,
)
from pyro_vae.runs.folder import RunDir, suffixed


def add_evaluate_parser(sub, formatter_class):
    """Add the ``evaluate`` command to the subparsers ``sub``; return its parser."""
    e = sub.add_parser(
        "evaluate",
        help="test ELBO, log p(x), IWAE bound, active units (and the family's own measures)",
        formatter_class=formatter_class,
    )
    e.add_argument("checkpoint", help="a checkpoint .pt file (or a run folder: its checkpoint_best.pt)")
    data_flags(e, required_default=False)
    plugin_flag(e)
    e.add_argument(
        "--split",
        default="test",
        choices=["test", "val"],
        help="which split to evaluate (test falls back to val if the data set has none)",
    )
    e.add_argument("--k", type=nonneg_int, default=5000, help="importance samples for log p(x) (0: ELBO only)")
    e.add_argument("--iwae-k", type=nonneg_int, default=50, help="samples for the IWAE bound (0: skip)")
    e.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N images")
    e.add_argument(
        "--generation",
        action="store_true",
        help="score generated images instead: Fréchet distance and Inception score from a classifier "
        "trained on the training labels (cached in the run folder; not comparable with "
        "published FIDs), and the spread of predicted classes",
    )
    e.add_argument(
        "--sampler",
        default="prior",
        choices=["prior", "mixture"],
        help="--generation: z from the prior, or from a Gaussian mixture fitted to the training codes",
    )
    e.add_argument("--components", type=positive_int, default=10, help="components of the --sampler mixture")
    e.add_argument("--num-generated", type=positive_int, default=10000, help="--generation: images to generate")
    e.add_argument("--batch-size", type=positive_int, default=100, help="images per evaluation batch")
    e.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed for the Monte Carlo samples (with --generation also of "
        "the generated images, the mixture and the feature classifier)",
    )
    device_flag(e)
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    return e


def cmd_evaluate(a) -> int:
    from pyro_vae.devices import set_seed
    from pyro_vae.training.finish import evaluate_and_save

    path = RunDir.checkpoint_path(a.checkpoint)
    family, ckpt = load_family(path, a.device)
    name, splits = load_splits(recorded_data(ckpt), a.dataset, a.data_dir, run=RunDir.of_checkpoint(path))
    data, label = eval_split(splits, name, a.split, trained_binarize(ckpt))
    if a.limit:
        data = data.subset(slice(0, a.limit))
    set_seed(a.seed)
    if a.generation:
        return _evaluate_generation(a, family, ckpt, splits, name, data, label, path)
    base = RunDir.of_checkpoint(path).evaluation(label, a.k, iwae_k=a.iwae_k, limit=a.limit, seed=a.seed)
    _, table = evaluate_and_save(
        family, data.to(device_of(family)), label, base, a.k, a.iwae_k, a.batch_size, not a.no_progress
    )
    print(f"{path} on {label} ({len(data)} images):\n{table}\nsaved {base}.json and {base}.txt")
    return 0


def _evaluate_generation(a, family, ckpt, splits, name, data, label, path) -> int:
    from pyro_vae.analysis.evaluate import format_table
    from pyro_vae.analysis.generation import score_generation
    from pyro_vae.contract import traits
    from pyro_vae.config import save_json
    from pyro_vae.data.batch import for_evaluation
    from pyro_vae.devices import memory_budget
    from pyro_vae.files import write_text

    t = traits(family)
    if t.conditional and not (a.sampler == "prior" and t.joint_prior):
        raise CLIError(
            f"--generation scores unconditional samples; {type(family).__name__} is conditional"
            + (" (its prior sampler draws the class too: use --sampler prior)" if t.joint_prior else "")
        )
    if splits.train.y is None:
        raise CLIError(
            f"--generation needs a labelled image data set to train its feature classifier; {name} has no labels"
        )
    dev = device_of(family)
    need = 2 * 4 * a.num_generated * math.prod(family.data_shape)  # the images, and their float copy for the features
    if need > memory_budget(dev):
        raise CLIError(
            f"--num-generated {a.num_generated}: the generated images need {need / 2**30:.3g} GiB, more "
            f"than this machine has free ({memory_budget(dev) / 2**30:.3g} GiB usable); generate fewer "
            f"(10000 is the usual count for a Fréchet distance)"
        )
    run = RunDir.of_checkpoint(path)
    train = for_evaluation(splits.train, trained_binarize(ckpt)).to(dev)
    scores = score_generation(
        family,
        train,
        data.to(dev),
        classifier_path=run.classifier,
        n=a.num_generated,
        sampler=a.sampler,
        components=a.components,
        seed=a.seed,
        progress=not a.no_progress,
        name=name,
    )
    scores["data"] = {"value": label, "unit": ""}
    base = run.generation(label, a.sampler, components=a.components, n=a.num_generated, limit=a.limit, seed=a.seed)
    table = format_table(scores)
    save_json(suffixed(base, ".json"), scores)
    write_text(suffixed(base, ".txt"), table + "\n")
    print(
        f"{path}: {a.num_generated} generated images against {label} ({len(data)} images):\n{table}\n"
        f"saved {base}.json and {base}.txt"
    )
    return 0
