#!/usr/bin/env python3
"""Drive headless Chromium (Debian's) over the DevTools protocol on a pipe: no network
client library, no websocket. Used by the web view's test.

  drive.py URL READY_JS WATCH_JS SCREENSHOT [TIMEOUT_S]

Opens URL, waits until READY_JS is truthy and prints {"ready_ms": now}; then evaluates
WATCH_JS every 50 ms until it returns something other than null and prints
{"seen": value, "seen_ms": now}; then saves a PNG screenshot of the page to SCREENSHOT and
prints {"screenshot": path}. Exits 1 with {"error": ...} on a timeout or a browser failure.
"""
import base64
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time

CHROMIUM = "/usr/lib/chromium/chromium" if os.path.exists("/usr/lib/chromium/chromium") else "chromium"


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="shoal-chromium-")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def fds():
            # Chromium reads commands on fd 3 and writes replies on fd 4 (moved out of the
            # way first: either pipe end may be 3 or 4 already).
            r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--remote-debugging-pipe", "--window-size=1400,900",
                f"--user-data-dir={self.profile}", "about:blank",
            ],
            pass_fds=(3, 4, to_child_r, from_child_w),
            preexec_fn=fds,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.buf = b""
        self.next_id = 0
        self.session = None

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def read(self):
        while b"\0" not in self.buf:
            chunk = os.read(self.from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def open(self, url):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False
        )
        self.session = attached["sessionId"]
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})

    def eval(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        self.proc.kill()
        self.proc.wait()


def say(**fields):
    print(json.dumps(fields), flush=True)


def main():
    url, ready_js, watch_js, shot = sys.argv[1:5]
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 120.0
    browser = Browser()
    try:
        browser.open(url)
        deadline = time.time() + timeout
        while not browser.eval(ready_js):
            if time.time() > deadline:
                say(error="the page never became ready", body=browser.eval("document.body && document.body.innerText"))
                return 1
            time.sleep(0.05)
        say(ready_ms=int(time.time() * 1000))
        while True:
            value = browser.eval(watch_js)
            if value is not None:
                say(seen=value, seen_ms=int(time.time() * 1000))
                break
            if time.time() > deadline:
                say(error="WATCH_JS never answered", body=browser.eval("document.body.innerText"))
                browser.screenshot(shot)
                return 1
            time.sleep(0.05)
        browser.screenshot(shot)
        say(screenshot=shot)
        return 0
    except Exception as e:  # the test reads the reason
        say(error=str(e))
        return 1
    finally:
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
