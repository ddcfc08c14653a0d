"""Render every page of the docs site in headless Chromium and report content cut off on the right.

Manual and optional (Chromium is not on a CI machine, so this is not part of ``nox``)::

    apt-get install -y chromium            # Debian; or pass --chromium /path/to/chrome
    python scripts/check_docs_render.py    # builds the site with mkdocs, checks it at 1280 px
    python scripts/check_docs_render.py --width 1024 --screenshots /tmp/shots

For each page a copy of the built HTML gets a small script at the end of its body that measures, after layout,
every code block, table and the page itself: an element whose content is wider than its box (``scrollWidth >
clientWidth``) needs a horizontal scroll bar, so part of it is hidden at that window width. Chromium's
``--dump-dom`` prints the DOM with the script's findings; the exit code is 1 when any page has one.
``--screenshots DIR`` also saves a PNG of each page's first screen, to look at.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "multicloud-store-overflow-report"

# Runs in the page after the stylesheets (loaded in <head>) apply; reading scrollWidth forces layout.
PROBE = """
<script>
(function () {
  const found = [];
  const seen = new Set();
  const check = (el, kind) => {
    if (seen.has(el)) return;
    seen.add(el);
    if (el.scrollWidth > el.clientWidth + 1) {
      found.push({kind: kind, hidden_px: el.scrollWidth - el.clientWidth,
                  text: (el.textContent || "").trim().split("\\n")[0].slice(0, 70)});
    }
  };
  document.querySelectorAll(".md-content pre > code").forEach(el => check(el, "code block"));
  document.querySelectorAll(".md-content .md-typeset__scrollwrap").forEach(el => check(el, "table"));
  document.querySelectorAll(".md-content table").forEach(el => {
    if (!el.closest(".md-typeset__scrollwrap")) check(el, "table");
  });
  // Informational: code blocks that fit only because extra.css wraps their long lines.
  const wrapped = [];
  document.querySelectorAll(".md-content pre > code").forEach(el => {
    const before = el.style.whiteSpace;
    el.style.whiteSpace = "pre";
    if (el.scrollWidth > el.clientWidth + 1) {
      wrapped.push({kind: "wrapped code block", hidden_px: el.scrollWidth - el.clientWidth,
                    text: (el.textContent || "").trim().split("\\n")[0].slice(0, 70)});
    }
    el.style.whiteSpace = before;
  });
  const page = document.scrollingElement;
  if (page.scrollWidth > window.innerWidth + 1) {
    found.push({kind: "page", hidden_px: page.scrollWidth - window.innerWidth, text: document.title});
  }
  const out = document.createElement("pre");
  out.id = "@MARKER@";
  out.textContent = JSON.stringify({cut: found, wrapped: wrapped});
  document.body.appendChild(out);
})();
</script>
""".replace("@MARKER@", MARKER)


def build_site(site: Path) -> None:
    """Build the mkdocs site into ``site`` (strict, as ``nox -s docs`` does)."""
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).with_name("mkdocs"))
    subprocess.run(  # noqa: S603 (our own tools, fixed arguments)
        [mkdocs, "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def pages(site: Path) -> list[Path]:
    """Every content page of the built site (not the 404 page)."""
    return sorted(p for p in site.rglob("index.html") if "assets" not in p.parts)


def _chromium_args(chromium: str, width: int, height: int) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        "--virtual-time-budget=3000",
    ]


def check_page(page: Path, chromium: str, width: int, height: int) -> dict[str, list[dict[str, object]]]:
    """Return what is cut off on one page (``cut``) and which code blocks only fit wrapped (``wrapped``)."""
    html = page.read_text(encoding="utf-8")
    probe_page = page.with_name("probe-index.html")  # same directory: relative asset links still resolve
    probe_page.write_text(html.replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
    try:
        run = subprocess.run(  # noqa: S603
            [*_chromium_args(chromium, width, height), "--dump-dom", probe_page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        probe_page.unlink()
    start = run.stdout.find(f'id="{MARKER}">')
    if start < 0:
        raise RuntimeError(f"no report from Chromium for {page}:\n{run.stderr[-2000:]}")
    body = run.stdout[start + len(f'id="{MARKER}">') :]
    text = body[: body.index("</pre>")]
    import html as html_module

    return dict(json.loads(html_module.unescape(text)))


def screenshot(page: Path, chromium: str, width: int, height: int, target: Path) -> None:
    """Save a PNG of the first screen of ``page``."""
    subprocess.run(  # noqa: S603
        [*_chromium_args(chromium, width, height), f"--screenshot={target}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Build (or take) the site, check every page, print the findings; exit 1 when something is cut off."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--site", type=Path, help="an already built site (default: build one with mkdocs)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--screenshots", type=Path, help="also save a PNG of each page here")
    args = parser.parse_args(argv)
    if not args.chromium:
        parser.error("Chromium not found: apt-get install -y chromium, or pass --chromium")
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site or Path(tmp) / "site"
        if args.site is None:
            build_site(site)
        if args.screenshots:
            args.screenshots.mkdir(parents=True, exist_ok=True)
        problems = wrapped = 0
        for page in pages(site):
            name = str(page.parent.relative_to(site))
            report = check_page(page, args.chromium, args.width, args.height)
            problems += len(report["cut"])
            wrapped += len(report["wrapped"])
            print(f"{'ok ' if not report['cut'] else 'CUT'} {name}")
            for item in report["cut"]:
                print(f"      {item['kind']}: {item['hidden_px']} px hidden: {item['text']}")
            for item in report["wrapped"]:
                print(f"      (wraps, nothing hidden) {item['hidden_px']} px too wide: {item['text']}")
            if args.screenshots:
                screenshot(
                    page,
                    args.chromium,
                    args.width,
                    args.height,
                    args.screenshots / f"{name.replace('/', '_')}.png",
                )
    print(f"{problems} element(s) cut off at {args.width} px; {wrapped} code block(s) fit only wrapped")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
