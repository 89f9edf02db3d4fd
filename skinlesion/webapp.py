"""Make a rendered site installable and usable offline: app icons, the web app manifest and the service worker.

Reads a site folder that `site.build_site` has filled (pages, static/, model/) and writes into it `icons/*.png`
(drawn here with Pillow), `manifest.webmanifest`, and `sw.js` from `web_templates/sw.js`. The service worker's
cache version joins the model's metadata version with a hash of every file it precaches, so any new build (a new
model, a changed page, script or stylesheet) gets a new cache and the old one is deleted. All URLs are relative.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jinja2
from PIL import Image, ImageDraw

SERVICE_WORKER = "sw.js"
MANIFEST = "manifest.webmanifest"
THEME_COLOR = "#084885"  # the header's colour (--accent-dark in style.css)
BACKGROUND_COLOR = "#ffffff"

# Cross-origin isolation: with these on the page's response, SharedArrayBuffer exists and TF.js runs WebAssembly on
# several threads. `site.serve` sends them; on hosts that cannot (GitHub Pages) the service worker adds them to the
# pages it answers, so from the second visit on the page is isolated there too.
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}

# (file, size, purpose). "maskable" icons are cropped to a circle or squircle by the launcher, so their drawing
# keeps to the central 80% and their background fills the whole square.
ICONS = (("icons/icon-192.png", 192, "any"), ("icons/icon-512.png", 512, "any"),
         ("icons/icon-maskable-512.png", 512, "maskable"))


def add_offline_support(site_dir: Path, env: jinja2.Environment, metadata: dict) -> str:
    """Write icons, manifest and service worker into `site_dir`; return the service worker's cache version."""
    site_dir = Path(site_dir)
    for name, size, purpose in ICONS:
        path = site_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _draw_icon(size, maskable=purpose == "maskable").save(path, optimize=True)
    (site_dir / MANIFEST).write_text(json.dumps(manifest(), indent=2) + "\n", encoding="utf-8")

    files = precache_files(site_dir)
    version = cache_version(site_dir, files, str(metadata.get("version") or "unversioned"))
    # "./" is how the page is reached at the site root (https://user.github.io/repo/); index.html is the same file
    # under its name (links in the site use it).
    urls = ["./", *files]
    script = env.get_template(SERVICE_WORKER).render(version=version, precache=urls,
                                                     isolation_headers=ISOLATION_HEADERS)
    (site_dir / SERVICE_WORKER).write_text(script, encoding="utf-8")
    return version


def manifest() -> dict:
    """The web app manifest: relative start_url and scope, so the app installs under any sub-path."""
    return {
        "name": "Skin lesion classifier",
        "short_name": "Skin lesions",
        "description": "Classify a dermatoscopic photo of a skin lesion into 7 types, privately, on this device. "
                       "Not a diagnosis.",
        "start_url": "./index.html",
        "scope": "./",
        "display": "standalone",
        "background_color": BACKGROUND_COLOR,
        "theme_color": THEME_COLOR,
        "icons": [{"src": name, "sizes": f"{size}x{size}", "type": "image/png", "purpose": purpose}
                  for name, size, purpose in ICONS],
    }


def precache_files(site_dir: Path) -> list[str]:
    """Every file of the built site except the service worker itself, as sorted relative URLs."""
    return sorted(p.relative_to(site_dir).as_posix() for p in Path(site_dir).rglob("*")
                  if p.is_file() and p.name != SERVICE_WORKER)


def cache_version(site_dir: Path, files: list[str], model_version: str) -> str:
    """'<model version>-<12 hex digits>': the hash covers the names and bytes of every precached file."""
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256((Path(site_dir) / name).read_bytes()).digest())
    safe_model = "".join(c for c in model_version if c.isalnum() or c in "._-") or "unversioned"
    return f"{safe_model}-{digest.hexdigest()[:12]}"


def _draw_icon(size: int, maskable: bool) -> Image.Image:
    """A pigmented lesion under a dermatoscope's ring, on the site's blue; drawn 4x larger, then scaled down."""
    scale = 4
    s = size * scale
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    blue = (8, 72, 133, 255)
    if maskable:
        draw.rectangle((0, 0, s, s), fill=blue)
        inset = 0.2 * s  # launchers may cut everything outside the central 80% circle
    else:
        draw.rounded_rectangle((0, 0, s - 1, s - 1), radius=int(0.22 * s), fill=blue)
        inset = 0.12 * s

    def box(cx: float, cy: float, r: float) -> tuple[float, float, float, float]:
        return (cx - r, cy - r, cx + r, cy + r)

    c = s / 2
    r_ring = (s - 2 * inset) / 2
    draw.ellipse(box(c, c, r_ring), fill=(255, 255, 255, 255))
    draw.ellipse(box(c, c, r_ring * 0.86), fill=(236, 205, 180, 255))  # skin seen through the lens
    # the lesion: overlapping discs give an irregular outline, a darker core
    for dx, dy, r in ((-0.12, -0.05, 0.42), (0.14, 0.06, 0.38), (0.02, 0.16, 0.34), (-0.05, -0.2, 0.3)):
        draw.ellipse(box(c + dx * r_ring, c + dy * r_ring, r * r_ring), fill=(139, 90, 60, 255))
    draw.ellipse(box(c + 0.03 * r_ring, c + 0.02 * r_ring, 0.22 * r_ring), fill=(84, 50, 32, 255))
    return image.resize((size, size), Image.LANCZOS)
