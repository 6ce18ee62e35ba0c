"""Write a notebook from a plain-text cell list (developer tool, not part of the package).

Format: cells separated by lines `# %%` (code) or `# %% [md]` (markdown); a `# %% [params]` code
cell gets papermill's `parameters` tag. Usage: python tools/nbwrite.py src.py nbs/NN_x.ipynb ; python tools/nbwrite.py --to-text nbs/NN_x.ipynb > src.py
"""
import sys, re, nbformat

def parse(text):
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        src = "\n".join(buf).strip("\n")
        if kind == "md":
            lines = [l[2:] if l.startswith("# ") else l[1:] if l.startswith("#") else l for l in src.splitlines()]
            cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
        else:
            c = nbformat.v4.new_code_cell(src)
            if kind == "params": c.metadata["tags"] = ["parameters"]
            cells.append(c)
    for line in text.splitlines():
        m = re.match(r"^# %%(?: \[(md|params)\])?\s*$", line)
        if m:
            flush(); kind, buf = (m.group(1) or "code"), []
        else:
            buf.append(line)
    flush()
    return cells

def to_text(nb_path):
    "The reverse: a notebook back to the cell-list format, outputs dropped."
    nb = nbformat.read(nb_path, as_version=4)
    out = []
    for c in nb.cells:
        if c.cell_type == "markdown":
            out.append("# %% [md]")
            out.append("\n".join(("# " + l) if l else "#" for l in c.source.splitlines())); out.append("")
            continue
        elif "parameters" in c.metadata.get("tags", []): out.append("# %% [params]")
        else: out.append("# %%")
        out.append(c.source); out.append("")
    return "\n".join(out)

def keep_ids(old_cells, new_cells):
    "Reuse the ids of the old notebook's cells for the aligned new cells, so a rewrite diffs only what changed."
    import difflib
    key = lambda c: (c.cell_type, c.source)
    sm = difflib.SequenceMatcher(a=[key(c) for c in old_cells], b=[key(c) for c in new_cells], autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag in ("equal", "replace"):
            for o, n in zip(old_cells[i1:i2], new_cells[j1:j2]):
                if "id" in o: n["id"] = o["id"]

if __name__ == "__main__":
    if sys.argv[1] == "--to-text":
        sys.stdout.write(to_text(sys.argv[2])); sys.exit(0)
    src, dst = sys.argv[1], sys.argv[2]
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (vertical_pretrain)", "language": "python", "name": "vertical_pretrain"},
                   "language_info": {"name": "python"}}
    nb.cells = parse(open(src, encoding="utf-8").read())
    import os
    if os.path.exists(dst):  # a rewrite keeps the notebook's own metadata (its kernel) and its cells' ids
        old = nbformat.read(dst, as_version=4)
        nb.metadata = old.metadata
        keep_ids(old.cells, nb.cells)
    nbformat.write(nb, dst)
