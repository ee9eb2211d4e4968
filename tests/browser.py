"""A headless Chromium driven over the DevTools protocol on a pipe (no extra Python package).

    with Browser() as b:                  # None of chromium/chromium-browser: b is never made
        page = b.open("http://127.0.0.1:PORT/", 1280, 800)
        value = page.evaluate("window.tilegen.ready.then(() => 1)")
        png = page.screenshot()

`chromium_path()` tells the tests whether one is installed (Debian: apt-get install chromium).
Chromium talks on file descriptors 3 (commands in) and 4 (replies out), NUL-separated JSON
(--remote-debugging-pipe); every page is a flat session on the browser's one connection.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

FLAGS = [
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--metrics-recording-only",
    "--mute-audio",
    "--remote-debugging-pipe",
]


def no_chromium() -> str | None:
    """Why the browser tests skip, or None when Chromium is here."""
    if chromium_path() is None:
        return "Chromium is not installed (apt-get install chromium; README 'Browser tests')"
    return None


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, timeout: float = 60, **params) -> dict:
        return self.browser.send(method, params, self.session, timeout)

    def evaluate(self, expression: str, timeout: float = 120):
        """The value of a JavaScript expression (promises awaited); raises on an exception."""
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        r = self.browser.send("Runtime.evaluate", params, self.session, timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise BrowserError(f"{text} (console: {self.browser.console[-5:]})")
        return r["result"].get("value")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])


class Browser:
    def __init__(self, path: str | None = None):
        self.path = path or chromium_path()
        if self.path is None:
            raise BrowserError("no chromium")
        self.profile = tempfile.mkdtemp(prefix="tilegen-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()

        def fds():  # chromium reads commands on fd 3 and writes replies on fd 4
            os.dup2(cmd_r, 3)
            os.dup2(out_w, 4)

        self.proc = subprocess.Popen(
            [self.path, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=fds,
            pass_fds=(3, 4),
        )
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.console: list[str] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out_r], [], [], left)[0]:
                raise BrowserError("chromium did not answer in time")
            chunk = os.read(self._out_r, 1 << 20)
            if not chunk:
                raise BrowserError("chromium closed the connection")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:  # fmt: skip
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            r = self._read(deadline)
            if r.get("id") == self._id:
                if "error" in r:
                    raise BrowserError(f"{method}: {r['error'].get('message')}")
                return r.get("result", {})
            self._event(r)

    def _event(self, r: dict) -> None:
        self.events.append(r)
        p = r.get("params", {})
        if r.get("method") == "Runtime.consoleAPICalled":
            self.console.append(
                " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
            )
        elif r.get("method") == "Runtime.exceptionThrown":
            self.console.append(str(p["exceptionDetails"].get("exception", {}).get("description")))

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            r = self._read(deadline)
            if r.get("method") == method:
                return r
            self._event(r)

    def open(self, url: str, width: int = 1280, height: int = 800, timeout: float = 60) -> Page:
        """A new tab at `url`, its load event awaited."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"])
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        self.events.clear()
        page.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", timeout)
        return page

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("Browser.close", timeout=10)
            except (BrowserError, OSError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._cmd_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
