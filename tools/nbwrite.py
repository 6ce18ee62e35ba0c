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

if __name__ == "__main__":
    if sys.argv[1] == "--to-text":
        sys.stdout.write(to_text(sys.argv[2])); sys.exit(0)
    src, dst = sys.argv[1], sys.argv[2]
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (vertical_pretrain)", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    nb.cells = parse(open(src, encoding="utf-8").read())
    nbformat.write(nb, dst)
