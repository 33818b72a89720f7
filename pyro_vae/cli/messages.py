"""What the command line says: its own mistakes (:class:`CLIError`), and the library's messages
said with the command's flags.

The library names a setting as Python does (``binarize='static'``, ``option latent_dim``); the
CLI is the one place that knows its flags, so it rewrites those names here (``--binarize static``,
``--latent-dim``) before printing.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import re

from pyro_vae.config import OptionError, TrainConfig, named


class CLIError(ValueError):
    """A mistake in the command line."""


PYTHON_NAMES = {"allow_changes": "allow_change", "run_dir": "out"}  # fit's keyword -> the flag's dest


def command_parser(parser, command):
    """The sub-parser of ``command`` (None if ``parser`` has no such command)."""
    return parser._subparsers._group_actions[0].choices.get(command) if parser._subparsers else None


def flags_of(parser, command) -> dict:
    """``{option name: argparse action}`` of ``command``'s long flags (dest = option name; a
    family option's dest ``opt_NAME`` is NAME; fit's keywords of :data:`PYTHON_NAMES` too)."""
    out = {}
    for action in getattr(command_parser(parser, command), "_actions", ()):
        if any(o.startswith("--") for o in action.option_strings):
            out.setdefault(action.dest[4:] if action.dest.startswith("opt_") else action.dest, action)
    out.update({py: out[dest] for py, dest in PYTHON_NAMES.items() if dest in out})
    if command not in (None, "train"):  # a setting of training (binarize=...) said as train's flag
        for name, action in flags_of(parser, "train").items():
            if name not in out:
                out[name] = copy.copy(action)
                out[name].said_as = f"pyro-vae train {_flag(action)}"
    return out


def _flag(action) -> str:
    return getattr(action, "said_as", None) or next(o for o in action.option_strings if o.startswith("--"))


def _in_call(text: str, pos: int) -> bool:
    """Whether ``pos`` is inside the parentheses of a call (``fit(..., objective=obj)``)."""
    depth = 0
    for i in range(pos - 1, -1, -1):
        if text[i] == ")":
            depth += 1
        elif text[i] == "(":
            if depth == 0:
                return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
            depth -= 1
    return False


_SETTING = re.compile(r"(?<![\w.\-/\\])([a-z][a-z0-9_]*)=(\[[^\]]*\]|'[^']*'|\"[^\"]*\"|[^\s,;:)]+)")
_OPTION = re.compile(r"\boption ([a-z][a-z0-9_]*)\b")
_NAMED = re.compile(r"(?<![\w-])([a-z][a-z0-9_]*) \((--[a-z0-9-]+)\)")


def with_flags(message, flags: dict) -> str:
    """A library message said with this command's flags: the library names a setting as Python
    does (``binarize='static'``, ``option latent_dim``; an :class:`~pyro_vae.config.OptionError`
    lists its options), and the CLI, the one place that knows its flags, says ``--binarize static``,
    ``--latent-dim``. ``NAME (--flag)`` (the older wording) becomes ``--flag``. Names that are not
    flags of the command (and ``name=value`` inside a call's parentheses) stay as they are."""
    if isinstance(message, OptionError):
        return "; ".join(
            (f"{_flag(flags[n])} {t}" if t.startswith("must ") else f"{_flag(flags[n])}: {t}")
            if n in flags
            else named(n, t)
            for n, t in message.problems
        )
    text = str(message)
    if not flags:
        return text

    def setting(m):
        action = flags.get(m[1])
        if action is None or _in_call(m.string, m.start()):
            return m[0]
        flag, value = _flag(action), m[2].strip("'\"")
        if value.startswith("["):  # a list: the values after the flag, or the flag repeated (append)
            values = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
            if isinstance(action, argparse._AppendAction):
                return " ".join(f"{flag} {v}" for v in values)
            return " ".join([flag, *values])
        if action.nargs == 0 and value in ("True", "False"):  # a switch
            if value == "True":
                return flag
            return f"--no-{flag[2:]}" if isinstance(action, argparse.BooleanOptionalAction) else f"no {flag}"
        off = _off_value(m[1])
        return f"{flag} {off if value == 'None' and off is not None else value}"

    text = _SETTING.sub(setting, text)
    text = _OPTION.sub(lambda m: _flag(flags[m[1]]) if m[1] in flags else m[0], text)
    return _NAMED.sub(lambda m: m[2] if m[1] in flags and _flag(flags[m[1]]) == m[2] else m[0], text)


def _off_value(name: str):
    f = next((f for f in dataclasses.fields(TrainConfig) if f.name == name), None)
    return None if f is None else f.metadata.get("off")
