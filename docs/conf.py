"""Sphinx configuration of the pyro-vae site: MyST pages, the tutorials (jupytext percent-format
``.py`` files executed by myst-nb at build time) and the API reference (autosummary over every
module). ``sphinx-build -W`` must pass: a broken cross-reference fails the build."""

import importlib
import os
import sys
import types
from pathlib import Path

from sphinx import addnodes

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package from this checkout, installed or not
# and for the kernels that run the tutorials
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
# `python -m pyro_vae` runs the CLI when imported; autosummary, listing submodules, would import it
sys.modules["pyro_vae.__main__"] = types.ModuleType("pyro_vae.__main__")

project = "pyro-vae"
author = "the pyro-vae authors"
copyright = "pyro-vae authors"
release = version = importlib.import_module("pyro_vae").__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".py": "myst-nb"}
exclude_patterns = ["_build", "conf.py", "_templates"]
templates_path = ["_templates"]

# ---- MyST and the tutorials
myst_enable_extensions = ["dollarmath", "colon_fence"]  # $...$ math (docs/vae.md), rendered by MathJax
myst_heading_anchors = 3  # [text](page.md#a-section) links resolve to the section
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = os.environ.get("PYRO_VAE_DOCS_EXECUTE", "force")  # "off": render without running
nb_execution_timeout = 1800
nb_execution_raise_on_error = True  # a tutorial that fails fails the build
nb_execution_in_temp = True  # their run folders go to a temporary folder, not into docs/
nb_merge_streams = True
nb_output_stderr = "remove"  # library warnings of the kernel (tqdm without ipywidgets); logging goes to stdout

# ---- the API reference
autosummary_generate = True
autosummary_context = {"public_names": importlib.import_module("pyro_vae").__all__}  # the top-level page
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
    "ignore-module-all": True,
}  # each object once, where it is defined
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False  # nn.Module's own docstrings are not ours to render
nitpicky = True  # every cross-reference must resolve (see resolve_by_import below)

# ---- the page
html_theme = "furo"
html_title = f"pyro-vae {release}"


def _lookup(path: str):
    """The object a dotted path names, importing the longest module prefix (None if none)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _canonical(obj, found_as: str) -> str:
    """Where an object is documented: its defining module and qualified name."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if hasattr(obj, "__module__") and hasattr(obj, "__qualname__"):
        return f"{obj.__module__}.{obj.__qualname__}"
    return found_as  # data: documented where it was found


def _summarized(node, module):
    """In an autosummary table, the module of the object a row summarizes: a summary is its
    object's first sentence, so its names are read where that object is defined."""
    row = node.parent
    while row is not None and row.tagname != "row":
        row = row.parent
    if row is None or module is None:
        return None
    name = row.children[0].astext().split("(")[0].strip()
    obj = _lookup(f"{module}.{name}") or _lookup(name)
    if obj is None:
        return None
    return obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)


def resolve_by_import(app, env, node, contnode):
    """Resolve a Python reference the way Python would: a name re-exported by a package
    (``pyro_vae.fit``), or imported into the module whose docstring names it (``ContractError``),
    links to where it is defined. A name outside pyro_vae (torch, pyro, the standard library)
    stays plain code: this build is offline, with no inventories of other projects."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    scopes = [_summarized(node, module), f"{module}.{cls}" if module and cls else None, module, None]
    for scope in scopes:
        path = f"{scope}.{target}" if scope else target
        obj = _lookup(path)
        if obj is None:
            continue
        name = _canonical(obj, path)
        if not name.startswith("pyro_vae"):
            return contnode  # outside this project: shown as code, not linked
        if any(part.startswith("_") for part in name.split(".")) or not callable(obj):
            return contnode  # exists, but private or a constant: not in the reference
        py = env.get_domain("py")
        for role in (node["reftype"], "obj"):
            ref = py.resolve_xref(env, node["refdoc"], app.builder, role, name, node, contnode)
            if ref is not None:
                return ref
        return None  # a pyro_vae object that the reference does not document: a warning
    return None


def link_files_outside(app, doctree):
    """A page's Markdown link to a file outside docs/ (which GitHub shows as the file): a module of
    the package links to its API page, any other file (a benchmark's result table) is offered as
    a download. A link to a file that does not exist stays a warning."""
    srcdir = Path(app.srcdir).resolve()
    for node in list(doctree.findall(addnodes.pending_xref)):
        if node.get("refdomain") != "doc" or node.get("reftype") != "myst":
            continue
        stem = (srcdir / node["reftarget"]).resolve()
        if stem.is_relative_to(srcdir):
            continue
        file = next((f for f in (stem.with_suffix(".py"), stem.with_suffix(".md")) if f.is_file()), None)
        if file is None:
            continue
        rel = file.relative_to(ROOT)
        if rel.parts[0] == "pyro_vae" and file.suffix == ".py":
            module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            new = addnodes.pending_xref(
                "",
                refdomain="py",
                reftype="mod",
                reftarget=module,
                refexplicit=True,
                refdoc=node["refdoc"],
                **{"py:module": None},
            )
        else:
            new = addnodes.download_reference(
                "",
                reftarget="/" + os.path.relpath(file, srcdir),
                refexplicit=True,
                refdoc=node["refdoc"],
                refdomain=None,
                reftype="myst",
            )
        new.extend(node.children)
        node.replace_self(new)


def setup(app):
    app.connect("doctree-read", link_files_outside, priority=100)  # before the download collector
    app.connect("missing-reference", resolve_by_import)
