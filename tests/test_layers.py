"""The package as layers (DESIGN.md, issue 24): every import among the package's modules, at module level or inside a
function alike, runs down one declared order, so the graph has no cycle.

The order is bottom to top. A module may import any module before it in ORDER, never one after it. The test parses
the exported modules with `ast`; it imports nothing. `KNOWN_UPWARD` lists the upward imports that the layering issue
has not removed yet: each must still exist (so the list only shrinks), and no other upward import may appear."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "vertical_pretrain"

ORDER = [
    # 0 foundation (config reads and writes its YAML atomically, so fileio is below it)
    "fileio", "config",
    # 1 shared readers: text decoding, the CJK test, input lines and files; model/tokenizer dirs (file names, the
    # local-path rule, config.json, loaders, sequence-length checks)
    "textio", "modeldir",
    # 2 data stages 01-05 (each imports only the ones before it)
    "ocr", "formats", "pdf2text", "lac", "segment", "dedup", "trans_to_json", "task", "decontam", "pretraining_data", "vocab", "dataset",
    # 3 training: the loop, then the launcher that starts it
    "pretrain", "launch",
    # 4 models
    "export", "extend_vocab", "replay", "tapt",
    # 5 evaluation
    "evaluate_mlm", "report", "finetune", "standin",
    # 6 orchestration
    "stages", "check", "pipeline", "docs", "cli",
]

# (importer, imported): upward imports still to be removed (issue 24). Do not add to this list.
KNOWN_UPWARD: set = set()


def package_imports(pkg: Path = PKG) -> dict[str, set[str]]:
    "{module: {package modules it imports}} from the source of every module (function-level imports included)."
    mods = {p.stem for p in pkg.glob("*.py") if not p.stem.startswith("_")}
    graph = {}
    for m in sorted(mods):
        seen = set()
        for node in ast.walk(ast.parse((pkg / f"{m}.py").read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom):
                if node.level:  # from .x import y / from . import x
                    names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                elif node.module and node.module.split(".")[0] == "vertical_pretrain":
                    parts = node.module.split(".")
                    names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[1] for a in node.names if a.name.startswith("vertical_pretrain.")]
            seen |= {n for n in names if n in mods and n != m}
        graph[m] = seen
    return graph


def upward(graph: dict, order: list) -> set:
    rank = {m: i for i, m in enumerate(order)}
    return {(a, b) for a, deps in graph.items() for b in deps if rank[b] > rank[a]}


def find_cycle(graph: dict) -> list | None:
    "One import cycle as [a, b, ..., a], or None."
    state, stack = {}, []
    def visit(m):
        state[m] = 1; stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1: return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)): return c
        state[m] = 2; stack.pop()
        return None
    for m in sorted(graph):
        if m not in state and (c := visit(m)): return c
    return None


def function_level_imports(pkg: Path = PKG) -> list[str]:
    "'module:line' of every import of another package module inside a function or method (not at module level)."
    mods = {p.stem for p in pkg.glob("*.py") if not p.stem.startswith("_")}
    out = []
    for m in sorted(mods):
        tree = ast.parse((pkg / f"{m}.py").read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)): continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("vertical_pretrain")):
                    sub = (node.module or "").split(".")
                    target = sub[1] if sub[0] == "vertical_pretrain" and len(sub) > 1 else sub[0] if node.level else ""
                    if target != m: out.append(f"{m}:{node.lineno}")
    return out


def test_package_imports_are_at_the_top_of_the_module():
    "DEVELOPING.md: an import inside a function is for a slow or optional dependency; the package's modules are neither."
    assert function_level_imports() == [], "move these imports to the module's import cell"


def test_every_module_has_its_place_in_the_order():
    mods = set(package_imports())
    assert set(ORDER) == mods, f"not in ORDER: {sorted(mods - set(ORDER))}; gone: {sorted(set(ORDER) - mods)}"


def test_imports_run_down_the_order():
    up = upward(package_imports(), ORDER)
    new = sorted(up - KNOWN_UPWARD)
    assert not new, (f"upward imports {new}: a module imports one above it in tests/test_layers.py ORDER; move the "
                     "shared piece down to a lower module instead")
    fixed = sorted(KNOWN_UPWARD - up)
    assert not fixed, f"{fixed} are gone: remove them from KNOWN_UPWARD, so they cannot come back"


def test_no_cycle_apart_from_the_known_upward_imports():
    graph = package_imports()
    for a, b in KNOWN_UPWARD: graph[a].discard(b)
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_checker_sees_the_cycles_it_must_catch(tmp_path):
    "The test is not blind: on a package made for it, a function-level import that closes a cycle is found."
    (tmp_path / "formats.py").write_text("from .pdf2text import Line\n")
    (tmp_path / "pdf2text.py").write_text("import os\nfrom . import ocr\n\ndef read():\n"
                                          "    from vertical_pretrain.formats import read_docx  # hidden in a function\n")
    (tmp_path / "ocr.py").write_text("import numpy\n")
    graph = package_imports(tmp_path)
    assert graph == {"formats": {"pdf2text"}, "pdf2text": {"formats", "ocr"}, "ocr": set()}
    assert find_cycle(graph) == ["formats", "pdf2text", "formats"]
    assert upward(graph, ["ocr", "formats", "pdf2text"]) == {("formats", "pdf2text")}
