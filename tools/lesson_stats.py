"""Per-notebook lesson statistics (developer tool, not part of the package): exported cells, the median and largest
number of non-blank lines in them, and whether the published course (docs/course/) shows outputs for the notebook.

Usage: python tools/lesson_stats.py [--nbs nbs] [--course docs/course] [--over 80]
Prints a markdown table, then the totals and each exported cell over --over lines (notebook, cell index, lines).
"""
import argparse
import json
import statistics
from pathlib import Path


def exported_cells(nb: dict) -> list[tuple[int, int]]:
    "(cell index, non-blank lines) of every `#| export` code cell."
    out = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code": continue
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        lines = [l for l in src.splitlines() if l.strip()]
        if lines and lines[0].replace(" ", "").startswith(("#|export", "#|exports")):
            out.append((i, len(lines)))
    return out


def has_outputs(path: Path) -> bool:
    "True when some code cell of the notebook at `path` has an output."
    if not path.is_file(): return False
    nb = json.loads(path.read_text(encoding="utf-8"))
    return any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nbs", default="nbs")
    p.add_argument("--course", default="docs/course")
    p.add_argument("--over", type=int, default=80)
    a = p.parse_args(argv)
    rows, every, big = [], [], []
    for f in sorted(Path(a.nbs).glob("*.ipynb")):
        cells = exported_cells(json.loads(f.read_text(encoding="utf-8")))
        sizes = [n for _, n in cells]
        every += sizes
        big += [(f.name, i, n) for i, n in cells if n > a.over]
        out = "yes" if has_outputs(Path(a.course) / f.name) else "no"
        med = f"{statistics.median(sizes):g}" if sizes else "-"
        rows.append(f"| {f.name} | {len(sizes)} | {med} | {max(sizes, default=0) or '-'} | {out} |")
    print("| notebook | exported cells | median lines | max lines | outputs in docs/course |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    lessons = len(rows)
    shown = sum(r.endswith("| yes |") for r in rows)
    print(f"\nall: {len(every)} exported cells, median {statistics.median(every):g}, max {max(every)}; "
          f"{len(big)} over {a.over} lines; {shown} of {lessons} notebooks with outputs in {a.course}")
    for name, i, n in sorted(big, key=lambda x: -x[2]): print(f"  {name} cell {i}: {n} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
