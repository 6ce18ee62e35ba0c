"""Every public function, class and method of the modules below has a docstring: the course site's API pages
(autodoc, vertical_pretrain.docs) show nothing for one that has none. The symbols are the ones nbdev exported
(vertical_pretrain/_modidx.py); a dataclass's generated `Name(field: type, ...)` text does not count."""
import importlib
import inspect

import pytest

from vertical_pretrain._modidx import d

# Modules whose public docstrings were reviewed and filled (shapes/units, errors, side effects, the source they follow).
REVIEWED = ["fileio", "textio", "modeldir", "pdf2text", "formats", "ocr", "segment", "lac", "trans_to_json", "vocab",
            "pretraining_data", "export", "extend_vocab", "check", "docs"]
# Modules whose public symbols all have a docstring, not yet reviewed for units, errors and sources.
HAVE_DOCSTRINGS = ["dedup", "decontam", "launch", "tapt", "finetune", "task", "report", "cli", "pipeline", "replay", "evaluate_mlm", "standin", "config", "dataset", "pretrain", "stages"]
CHECKED = REVIEWED + HAVE_DOCSTRINGS
# TODO(lead): these modules still have public symbols without a docstring; fill them, then move them to CHECKED.
# Every module of _modidx.py belongs in one of the lists (test_module_lists_cover_the_package).
TODO = []


def _public_symbols(module: str) -> list[str]:
    "`Name` and `Class.method` of the module's exported symbols without a leading underscore in any part."
    names = {k.split(".", 2)[2] for k in d["syms"].get(f"vertical_pretrain.{module}", {})}
    return sorted(n for n in names if not any(p.startswith("_") for p in n.split(".")))


def _missing_docstrings(module: str) -> list[str]:
    mod = importlib.import_module(f"vertical_pretrain.{module}")
    missing = []
    for name in _public_symbols(module):
        obj = mod
        for part in name.split("."): obj = inspect.getattr_static(obj, part, None)
        if isinstance(obj, (staticmethod, classmethod)): obj = obj.__func__
        if isinstance(obj, property): obj = obj.fget
        if hasattr(obj, "func") and not inspect.isroutine(obj): obj = obj.func  # functools.cached_property
        if obj is None: missing.append(f"{name} (not found)"); continue
        # a method may inherit its base class's docstring (as autodoc shows it); a class must have its own
        doc = ((obj.__doc__ if inspect.isclass(obj) else inspect.getdoc(obj)) or "").strip()
        if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("): doc = ""  # dataclass's generated signature
        if not doc: missing.append(name)
    return missing


def test_module_lists_cover_the_package():
    modules = {k.split(".", 1)[1] for k in d["syms"]}
    assert modules <= set(CHECKED) | set(TODO), f"add to a list: {sorted(modules - set(CHECKED) - set(TODO))}"
    assert set(CHECKED) | set(TODO) <= modules, f"not in _modidx.py: {sorted(set(CHECKED) | set(TODO) - modules)}"
    assert not set(CHECKED) & set(TODO), f"in both lists: {sorted(set(CHECKED) & set(TODO))}"


@pytest.mark.parametrize("module", CHECKED)
def test_public_symbols_have_docstrings(module):
    assert _public_symbols(module), f"vertical_pretrain.{module} exports no public symbol: is it still in _modidx.py?"
    missing = _missing_docstrings(module)
    assert not missing, f"vertical_pretrain.{module}: public symbols without a docstring: {missing}"


def test_the_check_sees_a_missing_docstring(monkeypatch):
    "The check itself can fail: an undocumented public function and a bare dataclass are reported."
    import dataclasses
    from vertical_pretrain import fileio
    before = set(_missing_docstrings("fileio"))
    def undocumented(): return 1
    Bare = dataclasses.make_dataclass("Bare", [("x", int)])
    class NoDoc: pass
    monkeypatch.setattr(fileio, "undocumented", undocumented, raising=False)
    monkeypatch.setattr(fileio, "Bare", Bare, raising=False)
    monkeypatch.setattr(fileio, "NoDoc", NoDoc, raising=False)
    monkeypatch.setitem(d["syms"], "vertical_pretrain.fileio",
                        {**d["syms"]["vertical_pretrain.fileio"], "vertical_pretrain.fileio.undocumented": ("", ""),
                         "vertical_pretrain.fileio.Bare": ("", ""), "vertical_pretrain.fileio.NoDoc": ("", ""),
                         "vertical_pretrain.fileio._private": ("", "")})
    assert set(_missing_docstrings("fileio")) - before == {"Bare", "NoDoc", "undocumented"}
