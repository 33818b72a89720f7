"""``pyro-vae``: train, evaluate, sample and plot any registered model family from the command line.

    pyro-vae train --epochs 50 --out runs/mnist                        # offline: 5k real MNIST images
    pyro-vae train --model NAME ... --out runs/x                       # any registered family (see --help)
    pyro-vae evaluate runs/mnist --k 5000
    pyro-vae sample runs/mnist -n 64
    pyro-vae plot runs/mnist
    pyro-vae train --plugin my_family --model mine --out runs/mine     # a user's registered family
    torchrun --nproc_per_node=2 -m pyro_vae.cli.app train --out runs/ddp   # DistributedDataParallel

Every choice (``--model``, ``--prior``, ``--likelihood``, ``--objective``, ``--network``) and every
option comes from the registries and the families' typed ``Config`` dataclasses: a prior's or
likelihood's constructor options become ``--prior-OPTION`` / ``--likelihood-OPTION``.

Exit codes: 0 success; 1 training diverged or a tracker failed; 2 a user mistake (bad option, data
or checkpoint), with one message naming it; 130 interrupted.

This module is the top of the package: the parser made of the commands' parsers, and
:func:`main`, which parses, runs a command and turns every error into one line and an exit code.
Below it, one module per command (``train``, ``evaluate``, ``sample``, ``plot``, ``compare``,
``classify``: its parser and its ``cmd_*``); below those, what the commands share: ``runs`` (a
run's checkpoint, data and settings), ``model_flags`` and ``flags`` (flags made from
declarations), ``plugins`` (``--plugin``) and ``messages`` (errors, said with the flags).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pyro_vae.cli.classify import add_classify_parser, cmd_classify
from pyro_vae.cli.compare import add_compare_parser, cmd_compare
from pyro_vae.cli.evaluate import add_evaluate_parser, cmd_evaluate
from pyro_vae.cli.flags import HelpWithDefaults, refuse_inert
from pyro_vae.cli.logs import console, said_with_flags
from pyro_vae.cli.messages import command_parser, flags_of, with_flags
from pyro_vae.cli.plot import add_plot_parser, cmd_plot
from pyro_vae.cli.plugins import load_plugins
from pyro_vae.cli.runs import config_defaults
from pyro_vae.cli.sample import add_sample_parser, cmd_sample
from pyro_vae.cli.train import add_train_parser, cmd_train
from pyro_vae.data.batch import DataError
from pyro_vae.files import RunLocked
from pyro_vae.models import ContractError
from pyro_vae.runs.checkpoint import CheckpointError, run_record
from pyro_vae.runs.folder import RunDir
from pyro_vae.training.callbacks import CallbackError
from pyro_vae.training.step import TrainingDiverged


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error, ``pyro-vae COMMAND: error: ...`` (the usage is in --help)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(train_defaults: dict | None = None) -> argparse.ArgumentParser:
    """The ``pyro-vae`` parser, one sub-parser a command; ``train_defaults`` (a run's settings)
    become the defaults of ``train``'s flags."""
    parser = _Parser(
        prog="pyro-vae",
        description="Variational autoencoders as Pyro programs: train, evaluate, sample, plot.",
        epilog="Exit codes: 0 success, 1 training diverged or a tracker failed, 2 a mistake in the options, data "
        "or files, 128 + the signal's number when interrupted (130: Ctrl-C, 143: SIGTERM).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(sub, HelpWithDefaults, train_defaults)
    for add_parser in (
        add_evaluate_parser,
        add_sample_parser,
        add_plot_parser,
        add_compare_parser,
        add_classify_parser,
    ):
        add_parser(sub, HelpWithDefaults)
    return parser


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "sample": cmd_sample,
    "plot": cmd_plot,
    "compare": cmd_compare,
    "classify": cmd_classify,
}


def _given_dests(parser, argv, command: str = "train") -> dict:
    """The options of ``command`` typed on the command line, as {dest: flag}."""
    options = command_parser(parser, command)._option_string_actions
    dests = {}
    for tok in argv:
        flag = tok.split("=", 1)[0]
        action = options.get(flag)
        if action is None and flag.startswith("--"):  # an unambiguous prefix, as argparse accepts it
            hits = [f for f in options if f.startswith(flag)]
            action = options[hits[0]] if len(hits) == 1 else None
        if action is not None and action.dest not in ("config", "out", "plugin", "no_progress", "help"):
            dests[action.dest] = flag
    return dests


def _interrupted(command, argv) -> str:
    """What an interrupt outside the training loop leaves, and what to do next."""
    if command != "train":
        return "interrupted; nothing was lost (every file written so far is complete); run the command again"
    out = next((argv[i + 1] for i, t in enumerate(argv[:-1]) if t == "--out"), None) or next(
        (t.split("=", 1)[1] for t in argv if t.startswith("--out=")), None
    )
    if out and (Path(out) / RunDir.LAST).is_file():
        return f"interrupted; every file written so far is complete: continue training with --resume --out {out}"
    return "interrupted before the first checkpoint was written; nothing to resume: run the command again"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    prog = f"pyro-vae {command}" if command else "pyro-vae"
    flags = {}  # this command's flags: library messages are said with them
    try:
        plugins = load_plugins(argv)
        defaults = None
        if command == "train":
            pre = _Parser(prog=prog, add_help=False)
            pre.add_argument("--config", default=None)
            pre.add_argument("--out", default=None)
            pre.add_argument("--resume", action="store_true")
            known = pre.parse_known_args(argv)[0]
            if known.config is not None:
                defaults = config_defaults(known.config)
            elif known.resume and known.out and (Path(known.out) / RunDir.LAST).is_file():
                # --resume: the run's own settings are the defaults, as its checkpoint records them
                # (config.json is a copy for people; training checks it against the checkpoint)
                last = Path(known.out) / RunDir.LAST
                defaults = config_defaults(last, run_record(last))
        parser = build_parser(defaults)
        flags = flags_of(parser, command)
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # say it as the command's parser, not the top-level one
            sub = parser._subparsers._group_actions[0].choices.get(getattr(args, "command", None), parser)
            sub.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.typed = _given_dests(parser, argv, args.command)
        refuse_inert(args, args.typed)
        if command == "train":
            import shlex

            args.command_line = "pyro-vae " + " ".join(shlex.quote(t) for t in argv)
            args.overrides = {d: getattr(args, d) for d in args.typed} if defaults else {}
        args.flags = flags
        if hasattr(args, "plugin"):
            args.plugin = plugins  # file plugins as absolute paths: the checkpoint's hint works anywhere
        with console(said_with_flags(flags)):  # the library's messages, said with this command's flags
            return COMMANDS[args.command](args)
    except (DataError, CheckpointError, FileExistsError, ContractError, ValueError, RunLocked) as e:
        print(f"{prog}: error: {with_flags(e, flags)}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError) as e:  # a path the user gave
        print(
            f"{prog}: error: {e.strerror or e}: {e.filename}; choose a path you can write (and read)", file=sys.stderr
        )
        return 2
    except OSError as e:  # any other file-system fault (full disk, name too long, link loop): one line
        print(
            f"{prog}: error: {e.strerror or e}"
            + (f": {e.filename}" if e.filename else "")
            + "; every file written before it is complete",
            file=sys.stderr,
        )
        return 2
    except (TrainingDiverged, CallbackError) as e:
        print(f"{prog}: training stopped: {with_flags(e, flags)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(
            f"{prog}: {with_flags(e, flags)}" if str(e) else f"{prog}: {_interrupted(command, argv)}", file=sys.stderr
        )
        return 128 + getattr(e, "signum", 2)


if __name__ == "__main__":
    sys.exit(main())
