"""The dashboard in a real browser while a real worker learns from a drifting log.

Headless Chromium (Debian's `chromium`, which `make system-deps` installs) driven by
Playwright opens ``/dashboard`` of a real `driftrec serve`; a real `driftrec worker`
learns from the synthetic drifting log replayed into the real Kafka, with its own
topics, consumer group, Redis prefix and data directory. The page must draw points,
show a drift-alarm and a promotion marker once they happened, and a rollback made
through the API; the worker's Prometheus endpoint must count what it learned; once the
worker is killed, the page must stop listing it within the heartbeat timeout. The
screenshot is saved in the test's temporary folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from driftrec.ops.settings import Settings
from driftrec.ops.worker_process import WorkerProcess, settings_env
from pydantic import SecretStr

from tests.ops.real_processes import free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "browser-test-token"
N_EVENTS = 40_000  # the abrupt drift is at 40 %, the gradual one from 70 %


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "the browser test needs Chromium: `make system-deps` installs it "
            "(apt-get install chromium)",
            pytrace=False,
        )
    return found


@pytest.fixture
def settings(isolated: Settings, redis_prefix: str, tmp_path: Path) -> Settings:
    return isolated.model_copy(
        update={
            "app_id": f"test-{uuid.uuid4().hex[:8]}",
            "redis_prefix": redis_prefix,
            "data_dir": tmp_path / "data",
            "admin_token": SecretStr(TOKEN),
            "metrics_port": free_port(),
            "serve_port": free_port(),
            "web_port": 0,
            "snapshot_every_s": 1.0,
            "checkpoint_every_s": 3.0,
            "checkpoint_every_examples": 3000,
            "reference_window_s": 30.0,
            "heartbeat_timeout_s": 8.0,
        }
    )


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings, tmp_path / "worker.log")
    yield process
    process.stop()


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftrec.ops.cli", "serve", "--port", str(settings.serve_port)],
        env=settings_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{settings.serve_port}"

    def alive() -> bool:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            with urllib.request.urlopen(f"{url}/livez", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_for(
        "the server answering /livez", alive, 120, lambda: (tmp_path / "serve.log").read_text()
    )
    yield url
    proc.terminate()
    proc.wait(20)
    log.close()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_dashboard_shows_learning_drift_promotion_and_rollback(
    settings: Settings, worker: WorkerProcess, server: str, tmp_path: Path
) -> None:
    from driftrec.producers import prefetched, replay_encoded
    from playwright.sync_api import sync_playwright

    executable = chromium()
    started = time.monotonic()
    with sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1300})
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"page error: {e}"))
        page.goto(f"{server}/dashboard")

        def seen() -> str:
            state = page.evaluate(
                """() => ({
                    points: Object.fromEntries(Object.entries(window.driftrec.charts)
                        .map(([id, c]) => [id, c.data.datasets.map((d) => d.data.length)])),
                    markers: [...document.querySelectorAll('#markers li')].slice(0, 12)
                        .map((li) => li.textContent),
                    status: document.getElementById('status').textContent,
                })"""
            )
            return f"{state}\nbrowser console: {console[-10:]}\nworker log: {worker.log_tail(1500)}"

        def markers(kind: str) -> int:
            return int(page.locator(f'#markers li[data-kind="{kind}"]').count())

        records = prefetched(
            "default",
            "synthetic",
            limit=N_EVENTS,
            options={"n_events": str(N_EVENTS), "seed": "7", "n_users": "600"},
        )
        replay_encoded(records, settings, speed=None)

        points = """() => ['auc', 'throughput', 'freshness'].every((id) =>
            window.driftrec.charts[id].data.datasets.some((d) => d.data.length >= 3))"""
        wait_for(
            "points in the AUC, throughput and freshness charts",
            lambda: page.evaluate(points),
            240,
            seen,
        )
        wait_for("a promotion marker", lambda: markers("auto-promote"), 240, seen)
        wait_for("a drift-alarm marker", lambda: markers("drift-alarm"), 300, seen)
        wait_for(
            "a second promotion (a rollback target)",
            lambda: markers("auto-promote") >= 2,
            240,
            seen,
        )

        request = urllib.request.Request(
            f"{server}/models/rollback",
            method="POST",
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        wait_for("the rollback marker", lambda: markers("rollback"), 30, seen)
        wait_for(
            "the label-free drift panel",
            lambda: page.locator("#top-movers-list").count() > 0,
            60,
            seen,
        )
        drawn = """() => ['lag', 'psi'].every((id) =>
            window.driftrec.charts[id].data.datasets.some((d) => d.data.length >= 1))"""
        wait_for("points in the lag and PSI charts", lambda: page.evaluate(drawn), 60, seen)
        screenshot = tmp_path / "dashboard.png"
        page.screenshot(path=str(screenshot), full_page=True)
        metrics = scrape(settings.metrics_port)

        # A crashed worker disappears from the live status within the heartbeat timeout.
        worker.kill()
        killed = time.monotonic()
        wait_for(
            "the killed worker leaving the status",
            lambda: (
                "none alive" in page.inner_text("#status-workers")
                and "silent" in page.inner_text("#status")
            ),
            settings.heartbeat_timeout_s + 20,
            seen,
        )
        gone_after = time.monotonic() - killed
        assert not [line for line in console if line.startswith(("error", "page error"))], console
        browser.close()
    print(
        f"\nscreenshot: {screenshot} ({time.monotonic() - started:.0f} s); worker gone after {gone_after:.0f} s"
    )
    assert screenshot.stat().st_size > 10_000

    applied = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("driftrec_examples_applied_total")
    ]
    assert applied and applied[0] > 0, metrics[:2000]
    assert 'driftrec_drift_alarms_total{detector="' in metrics
