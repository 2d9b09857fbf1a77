"""report.html in a real headless browser: every plot decodes, the tables render."""
import re
import shutil
import subprocess

import pytest

from crossgrad.harness.cli import main

from conftest import need

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (.ci/run installs Debian's)")
def test_report_renders_with_its_plots(tmp_path):
    need("torch")
    out = tmp_path / "report"
    assert main(["run", "--zoo", "xor_2_2_1", "seq_lstm", "--frameworks", "numpy,torch",
                 "--steps", "6", "--out", str(out), "--quiet"]) == 0
    # --no-sandbox: CI runs as root; the network flags keep Chromium off a closed network
    dom = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (out / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-plots="2"' in body and 'data-plots-decoded="2"' in body, body
    assert dom.count("<table") >= 3 and "seq_lstm" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", f"--user-data-dir={tmp_path / 'p2'}",
                    "--window-size=1100,2600", f"--screenshot={shot}", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    import numpy as np
    from PIL import Image
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    torch_red = (np.abs(pixels - [0xee, 0x4c, 0x2c]).max(1) < 30).sum()
    assert torch_red > 200  # the torch curves were drawn on screen
