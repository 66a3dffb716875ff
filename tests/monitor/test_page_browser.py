"""The status page in a real headless Chromium: its summary colours in the screenshot's pixels, and its title."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from monitor.core.results import Outcome, Result
from monitor.metrics import Metrics
from monitor.page import PALETTE
from monitor.server import create_app
from monitor.state import State
from tests.support.servers import serve_asgi

pytestmark = pytest.mark.process  # starts the daemon, a stand-in target or another binary as a process

NOW = 1_795_000_000.0
# Where screenshots are kept for a person to look at (the test's tmp_path otherwise).
SHOT_DIR_VAR = "PAM_MONITOR_SCREENSHOT_DIR"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: these tests render the status page in headless Chromium. "
                    "Install it with `apt-get install -y chromium` (scripts/test does it for you).")
    return path


def _flags(profile: Path) -> list[str]:
    return [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--force-color-profile=srgb", "--hide-scrollbars", f"--user-data-dir={profile}"]


def _screenshot(url: str, out: Path, tmp_path: Path) -> Image.Image:
    done = subprocess.run([*_flags(tmp_path / "profile-shot"), f"--screenshot={out}", "--window-size=1200,900", url],
                          capture_output=True, text=True, timeout=120)
    assert out.exists(), f"chromium wrote no screenshot (exit {done.returncode}):\n{done.stderr[-2000:]}"
    return Image.open(out).convert("RGB")


def _dump_dom(url: str, tmp_path: Path) -> str:
    done = subprocess.run([*_flags(tmp_path / "profile-dom"), "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert 0 == done.returncode, done.stderr[-2000:]
    return done.stdout


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _count(image: Image.Image, colour: str, tolerance: int = 3) -> int:
    """How many pixels have this palette colour (within `tolerance` per channel)."""
    want = _rgb(colour)
    return sum(
        n for n, pixel in image.getcolors(maxcolors=image.width * image.height) or []
        if all(abs(a - b) <= tolerance for a, b in zip(pixel, want, strict=True))
    )


def _state(outcomes: dict[str, Outcome]) -> State:
    state = State(lambda: 0.0)
    state.set_checks([(name, "http") for name in outcomes], dict.fromkeys(outcomes, 30.0))
    for i in range(5):
        for name, outcome in outcomes.items():
            state.record(Result(check=name, kind="http", outcome=outcome if i >= 3 else Outcome.OK, message="m",
                                duration_s=0.02, started_at=NOW - 150 + 30 * i, finished_at=NOW - 150 + 30 * i))
    return state


@pytest.fixture
def shot_dir(tmp_path: Path) -> Path:
    where = Path(os.environ.get(SHOT_DIR_VAR) or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_failing_page_shows_red_summary_and_green_ok_check(tmp_path: Path, shot_dir: Path) -> None:
    """One failing and one ok check: the banner is red, the ok check's cells green, the title counts the failure."""
    state = _state({"settings_get": Outcome.SERVER_ERROR, "backend_health": Outcome.OK})
    app = create_app(state, Metrics(process_metrics=False), lambda: "pam-backend", clock=lambda: NOW)
    with serve_asgi(app) as base:
        image = _screenshot(base + "/", shot_dir / "failing.png", tmp_path)
        dom = _dump_dom(base + "/", tmp_path)
    assert _rgb(PALETTE["bad"]) == image.getpixel((600, 8)), "the summary banner at the top is red"
    assert 20_000 < _count(image, PALETTE["bad"])
    assert 100 < _count(image, PALETTE["ok"])
    assert "<title>(1) failing - pam-monitor: pam-backend</title>" in dom
    assert "1 of 2 checks failing, no alert firing" in dom


def test_all_ok_page_has_no_red(tmp_path: Path, shot_dir: Path) -> None:
    """Every check ok: the banner is green and not one pixel of the failure red appears."""
    state = _state({"backend_health": Outcome.OK, "voice_health": Outcome.OK})
    app = create_app(state, Metrics(process_metrics=False), lambda: "pam-backend", clock=lambda: NOW)
    with serve_asgi(app) as base:
        image = _screenshot(base + "/", shot_dir / "all-ok.png", tmp_path)
        dom = _dump_dom(base + "/", tmp_path)
    assert _rgb(PALETTE["ok"]) == image.getpixel((600, 8)), "the summary banner at the top is green"
    assert 0 == _count(image, PALETTE["bad"], tolerance=40)
    assert "<title>OK - pam-monitor: pam-backend</title>" in dom
    assert "All 2 checks OK, no alert firing" in dom
