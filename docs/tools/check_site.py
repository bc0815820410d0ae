"""Looks at the built site as a reader would: `make docs-check` (not in CI).

    python3 docs/tools/check_site.py SITE_DIR OUT_DIR

Serves SITE_DIR on 127.0.0.1, opens a few pages in headless Chromium
(Debian's `chromium`), saves a screenshot of each in OUT_DIR, and fails
(exit status 1) on what a reader would meet: a request the server answered
with an error (a missing stylesheet, script, image or page), a console
message from the page (a script error, a resource that did not load), or a
page that pulls anything from another host (the site must work offline).
"""

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# The home page, guide pages (the study's with its pictures), API pages: name,
# path, and the window's height (the screenshot's).
PAGES = (
    ("home", "", 1000),
    ("guide-loss", "guide/loss/", 1000),
    ("guide-study", "guide/study/", 3400),
    ("api-losses", "reference/losses/", 1600),
    ("api-data", "reference/data/", 1000),
)
# An asset or script fetched from elsewhere: a CDN, web fonts.
REMOTE_ASSET = re.compile(
    r"<(?:script|img)[^>]*\ssrc=\"(?:https?:)?//|<link[^>]*\shref=\"(?:https?:)?//"
)


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site and records every request's status code."""

    requests = []

    def log_message(self, format, *args):
        pass

    def log_request(self, code="-", size="-"):
        self.requests.append((self.path, int(code) if str(code).isdigit() else code))


def serve(site):
    handler = functools.partial(Handler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    sys.exit("docs-check needs headless Chromium: apt-get install -y chromium")


def open_page(chromium, url, height, screenshot, profile):
    """Loads `url`, saves a screenshot; returns the page's console messages."""
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # as root, Chromium's sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size=1280,{height}",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",  # let the page's scripts run first
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={screenshot}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0 or not screenshot.exists():
        return [f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"]
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built site (mkdocs build)")
    parser.add_argument("out", type=Path, help="where the screenshots go")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").exists():
        sys.exit(f"{args.site} holds no built site: run `make docs` first")
    args.out.mkdir(parents=True, exist_ok=True)

    problems = []
    for page in sorted(args.site.rglob("*.html")):
        for remote in REMOTE_ASSET.findall(page.read_text()):
            problems.append(f"{page.relative_to(args.site)} loads from another host: {remote}")

    chromium = browser()
    server = serve(args.site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with tempfile.TemporaryDirectory() as profile:
            for name, path, height in PAGES:
                shot = args.out / f"{name}.png"
                shot.unlink(missing_ok=True)
                console = open_page(chromium, base + path, height, shot, profile)
                problems.extend(f"{name}: {line}" for line in console)
                print(f"{base + path} -> {shot}")
    finally:
        server.shutdown()

    # 304 (not modified) is the browser reusing what it fetched for an earlier page.
    failed = sorted(
        {
            (path, code)
            for path, code in Handler.requests
            if not isinstance(code, int) or code >= 400
        }
    )
    problems.extend(f"HTTP {code}: {path}" for path, code in failed)
    images = sum(path.endswith(".png") for path, _ in Handler.requests)
    print(f"{len(Handler.requests)} requests served ({images} images), {len(failed)} failed")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
