"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the docs tests."""
import json
import re
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # DevTools is local: never via a proxy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    "One Chromium tab: load a file:// URL, evaluate JS, take a screenshot."

    def __init__(self, width=1200, height=900):
        import websocket  # websocket-client, a jupyter dependency
        self.port, self.profile = _free_port(), tempfile.mkdtemp(prefix="chromium-")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--remote-debugging-port={self.port}",
                                      f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ws_url = None
        for _ in range(100):
            try:
                tabs = json.load(_LOCAL.open(f"http://127.0.0.1:{self.port}/json", timeout=1))
                ws_url = next(t["webSocketDebuggerUrl"] for t in tabs if t.get("type") == "page")
                break
            except Exception:
                time.sleep(0.2)
        if ws_url is None:
            self.close(); raise RuntimeError("chromium did not start")
        self.ws = websocket.create_connection(ws_url, timeout=60)
        self._id = 0
        self.call("Page.enable")

    def call(self, method, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg: raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str, settle: float = 0.5):
        self.call("Page.navigate", url=url)
        for _ in range(200):
            if self.eval("document.readyState") == "complete": break
            time.sleep(0.1)
        time.sleep(settle)

    def eval(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")

    def screenshot(self, path) -> Path:
        import base64
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self):
        try: self.ws.close()
        except Exception: pass
        self.proc.kill(); self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self): return self
    def __exit__(self, *a): self.close()


def page_report(page: Page) -> dict:
    "What a reader sees: title, headings, and every image with its decoded size."
    return page.eval("""(() => ({
        title: document.title,
        h1: Array.from(document.querySelectorAll('h1')).map(h => h.textContent.trim()),
        links: Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href')),
        images: Array.from(document.images).map(i => ({w: i.naturalWidth, h: i.naturalHeight, complete: i.complete})),
        text_len: document.body.innerText.length
    }))()""")


# --- the course site (vertical_pretrain.docs.build_site), checked the way a reader uses it ---------------------------

# Every proxy a closed port: a build that tries to fetch anything fails instead of silently downloading.
NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
              "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}
_EXTERNAL = "performance.getEntriesByType('resource').map(e => e.name).filter(n => !/^(file|data|blob|about):/.test(n))"
_DECODE = """(async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  const one = i => Promise.race([i.decode().then(() => true, () => false), new Promise(r => setTimeout(() => r(false), 10000))])
    .then(ok => ({src: i.getAttribute('src'), ok: ok && i.naturalWidth > 0, w: i.naturalWidth, h: i.naturalHeight}));
  return Promise.all(imgs.map(one));
})()"""


def _wait(page: Page, expr: str, timeout: float = 20.0):
    "Poll a JS expression until it is truthy; returns its value (or fails naming it)."
    t0 = time.time()
    while time.time() - t0 < timeout:
        try: v = page.eval(expr)
        except RuntimeError as e:  # the page is being replaced by the one we wait for
            if "navigated" not in str(e) and "context" not in str(e): raise
            v = None
        if v: return v
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {expr}")


def check_page(page: Page, what: str) -> list[dict]:
    "The page has a title heading, loads nothing from the network, and every image decodes; returns the images."
    assert page.eval("document.querySelector('main h1, article h1') !== null"), f"{what}: no h1"
    external = page.eval(_EXTERNAL)
    assert not external, f"{what} loads from the network: {external}"
    imgs = page.eval(_DECODE)
    bad = [i for i in imgs if not i["ok"]]
    assert not bad, f"{what}: images that do not decode: {bad}"
    return imgs


def check_course_site(index: Path, lessons: list[str], shots: Path, *, search: tuple[str, str],
                      api: tuple[str, str, str], prefix: str = "site") -> dict:
    """Open the site at `index` in headless Chromium and use it as a reader would: the landing page loads; the sidebar
    lists `lessons` (html names) in order and clicking each one opens it, with previous/next links to its neighbours;
    every image decodes and nothing comes from the network; the search box finds `search[0]` on page `search[1]`;
    the API page of module `api[0]` lists function `api[1]` with docstring line `api[2]`. Screenshots go to `shots`.
    Returns {page: [images]}."""
    shots.mkdir(parents=True, exist_ok=True)
    seen = {}
    with Page(width=1280, height=900) as page:
        page.goto(index.as_uri(), settle=0.5)
        seen["index.html"] = check_page(page, "index.html")
        side = page.eval("Array.from(document.querySelectorAll('.bd-sidebar-primary nav a.reference.internal'))"
                         ".map(a => a.getAttribute('href'))")
        in_side = [h for h in side if h in lessons]
        assert in_side == lessons, f"sidebar order {in_side} != course order {lessons}"
        page.screenshot(shots / f"{prefix}_index.png")
        for k, name in enumerate(lessons):
            clicked = page.eval(f"""(() => {{ const a = Array.from(document.querySelectorAll('.bd-sidebar-primary nav a.reference.internal'))
                .find(a => a.getAttribute('href') === {json.dumps(name)}); if (!a) return false; a.click(); return true; }})()""")
            assert clicked, f"no sidebar link to {name} on {page.eval('location.pathname')}"
            _wait(page, f"location.pathname.endsWith('/{name}') && document.readyState === 'complete'")
            time.sleep(0.2)
            seen[name] = check_page(page, name)
            download = page.eval("(document.querySelector('a.btn-download-source-button') || {href: null}).href")
            assert download and Path(urllib.request.url2pathname(download.split("file://", 1)[-1])).is_file(), \
                f"{name}: the download button points to {download}, which is not a file"
            prev_next = page.eval("[document.querySelector('.prev-next-area a.left-prev'), document.querySelector('.prev-next-area a.right-next')]"
                                  ".map(a => a && a.getAttribute('href'))")
            want_prev = lessons[k - 1] if k else "index.html"
            assert prev_next[0] == want_prev, f"{name}: previous link {prev_next[0]}, expected {want_prev}"
            if k + 1 < len(lessons): assert prev_next[1] == lessons[k + 1], f"{name}: next link {prev_next[1]}, expected {lessons[k + 1]}"
            page.screenshot(shots / f"{prefix}_{Path(name).stem}.png")
        # search, through the search form in the page header, as a reader types it
        term, expected = search
        page.goto(index.as_uri(), settle=0.3)
        page.eval(f"""(() => {{ const f = document.querySelector('form.bd-search');
            f.querySelector('input[name=q]').value = {json.dumps(term)}; f.submit(); }})()""")
        _wait(page, "location.pathname.endsWith('/search.html') && document.readyState === 'complete'")
        _wait(page, "(document.querySelector('#search-results .search-summary') || {}).textContent", timeout=30)
        hits = page.eval("Array.from(document.querySelectorAll('#search-results ul.search li a'))"
                         ".map(a => a.getAttribute('href').split(/[?#]/)[0])")
        page.screenshot(shots / f"{prefix}_search.png")
        assert expected in hits, f"searching {term!r} lists {hits}, not {expected}"
        assert not page.eval(_EXTERNAL), "the search page loads from the network"
        # API reference
        mod, func, doc = api
        page.goto((index.parent / "api" / f"{mod}.html").as_uri(), settle=0.3)
        seen[f"api/{mod}.html"] = check_page(page, f"api/{mod}.html")
        dd = page.eval(f"""(() => {{ const dt = document.getElementById({json.dumps(f'{mod}.{func}')});
            return dt ? dt.parentElement.querySelector('dd').innerText : null; }})()""")
        assert dd is not None, f"api/{mod}.html does not list {func}"
        want = " ".join(re.sub(r"[`*]", "", doc).split())
        assert want in " ".join(dd.split()), f"{mod}.{func}'s docstring is not on its API page: {dd[:300]!r}"
        page.screenshot(shots / f"{prefix}_api_{mod}.png")
    return {"pages": seen, "search_hits": hits}


def docstring_first_paragraph(py_file: Path, func: str) -> str:
    "The first paragraph of a function's docstring, read from the source file (no import)."
    import ast
    for node in ast.parse(Path(py_file).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and node.name == func:
            return (ast.get_docstring(node) or "").split("\n\n")[0]
    raise LookupError(f"{py_file} has no function {func}")
