"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the docs tests."""
import json
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
                tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json", timeout=1))
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
