"""report.html in a real headless Chromium, offline, in a 1280-pixel-wide window: every
interactive panel draws (with its legend off the plot area), every link resolves, the
verdict columns fit without scrolling sideways, and the curves show in their colours."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from crossgrad.harness.cli import main

from conftest import need

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)
# --no-sandbox: CI runs as root; the network flags keep Chromium off the network, and the
# resolver rule makes any fetch fail, so the page must work offline; the virtual time
# budget lets the page script unpack plotly.js and draw every panel before the dump.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=60000"]
WIDTH = 1280

pytestmark = pytest.mark.skipif(BROWSER is None,
                                reason="no Chromium installed (.ci/run installs Debian's)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    need("torch")
    out = tmp_path_factory.mktemp("browser") / "report"
    assert main(["run", "--zoo", "xor_2_2_1", "seq_lstm", "--frameworks", "numpy,torch",
                 "--steps", "6", "--out", str(out), "--quiet"]) == 0
    return out


def chromium(page, profile, *args):
    return subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={profile}", *args,
                           page.as_uri()], capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def dom(report, tmp_path_factory):
    """The page's DOM once its script has run, in a window 1280 pixels wide."""
    profile = tmp_path_factory.mktemp("profile")
    return chromium(report / "report.html", profile, f"--window-size={WIDTH},900",
                    "--dump-dom").stdout


def body(dom):
    tag = re.search(r"<body[^>]*>", dom).group(0)
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', tag))


def test_every_panel_draws_offline(dom):
    attrs = body(dom)
    assert "panels-error" not in attrs, attrs
    panels = int(attrs["panels"])
    assert panels >= 8 and attrs.get("panels-drawn") == str(panels), attrs
    assert dom.count('data-drawn="1"') == panels
    assert dom.count("class=\"main-svg\"") >= panels        # Plotly's drawing surfaces
    assert dom.count('data-legend-clear="1"') == panels, "a legend covers a plot area"


def test_the_verdicts_fit_a_1280_pixel_window(dom):
    attrs = body(dom)
    assert int(attrs["viewport"]) == WIDTH
    assert 0 < int(attrs["verdict-right"]) <= WIDTH, attrs
    assert int(attrs["tables-right"]) <= WIDTH, attrs
    assert int(attrs["page-width"]) <= WIDTH, attrs          # nothing scrolls sideways


def test_every_link_resolves(dom, report):
    dom = re.sub(r"<script.*?</script>", "", dom, flags=re.S)  # plotly.js's own text
    ids = re.findall(r'\sid="([^"]+)"', dom)
    assert len(ids) == len(set(ids)) and all(" " not in i for i in ids)
    hrefs = re.findall(r'<a[^>]*\shref="([^"]+)"', dom)
    internal = [h[1:] for h in hrefs if h.startswith("#")]
    assert len(internal) > 20 and set(internal) <= set(ids)
    files = [h for h in hrefs if not h.startswith("#")]
    assert not [h for h in files if re.match(r"\w+:", h)], "the report links outside itself"
    assert all((report / h).exists() for h in files), files
    data = {p.name for p in report.iterdir() if p.suffix in (".csv", ".json")}
    assert data and data <= set(files)
    for model in ("xor_2_2_1", "seq_lstm"):
        assert f'href="#{model}"' in dom and f'id="{model}"' in dom


def test_the_curves_show_in_their_colours(report, tmp_path):
    shot = tmp_path / "shot.png"
    chromium(report / "report.html", tmp_path / "profile", f"--window-size={WIDTH},5200",
             f"--screenshot={shot}")
    from PIL import Image
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    torch_red = (np.abs(pixels - [0xee, 0x4c, 0x2c]).max(1) < 30).sum()
    assert torch_red > 200  # the torch curves were drawn on screen
