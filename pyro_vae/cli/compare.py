"""``pyro-vae compare``: run folders side by side (:func:`pyro_vae.figures.compare.compare_runs`)."""

from __future__ import annotations

from pyro_vae.cli.plugins import plugin_flag


def add_compare_parser(sub, formatter_class):
    """Add the ``compare`` command to the subparsers ``sub``; return its parser."""
    p = sub.add_parser(
        "compare",
        help="compare run folders: test metrics, the settings that differ, validation curves",
        description="Compare run folders side by side: a table of their test metrics, the "
        "settings of config.json that differ, and their validation curves on one "
        "figure. Writes compare.md, index.html and val_curves.png to --out.",
        formatter_class=formatter_class,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by pyro-vae train")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder to write the comparison into (outside every run folder: a run's own index.html is its report)",
    )
    p.add_argument(
        "--names",
        nargs="+",
        default=None,
        metavar="NAME",
        help="display names, one per run in the order given (default: the folder names)",
    )
    plugin_flag(
        p,
        "import MODULE (a module name or a .py file) first, so that the checkpoints of the families it "
        "registers load and their parameters are counted (repeatable)",
    )
    return p


def cmd_compare(args) -> int:
    """Run ``pyro-vae compare`` from parsed arguments (``runs``, ``out``, optional ``names``)."""
    from pyro_vae.figures.compare import HTML, compare_runs

    md = compare_runs(args.runs, args.out, names=getattr(args, "names", None))
    print(f"wrote {md} and {md.with_name(HTML)}")
    return 0
