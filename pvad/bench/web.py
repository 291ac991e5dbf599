"""`pvad bench web`: the operator dashboard's targets, measured in Debian's Chromium driven by Playwright.

An analysis server runs in this process with the dashboard on (the tiny untrained profile of `pvad bench
faults`: this measures delivery to the page, not detection). Cameras stream pre-encoded dp-encoder
latents over mTLS in real time, each on one Ingest stream. Alarms are injected with
``AlarmHub.publish_alarm`` (persisted, then published: the path every alarm takes) so that their
number and timing are known. All times are wall-clock milliseconds of this one machine (server and
browser share the clock).

Measured: each camera's frame counter advance in 1 s on the page, the server→page delay of score
events (p50/p95), the time from an alarm's publication until the page has it, an acknowledgement's
time until every open tab shows "acked by" (and its audit row), the time until 8 camera tiles are on
a freshly loaded page with the number of long-lived (event stream) responses it holds, how long a
stopped camera takes to show offline, SIGTERM of a `pvad server` process with three dashboards open,
and the alarm list after that server is killed (SIGKILL) and started again.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def find_chromium() -> str | None:
    """Debian's Chromium (``apt-get install chromium``), or None; a downloaded browser is never used."""
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium")
    return found if found and os.access(found, os.X_OK) else None


async def launch_chromium(playwright):
    path = find_chromium()
    if path is None:
        raise RuntimeError("no system Chromium: apt-get install chromium (make services does, as root)")
    return await playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS, headless=True)


async def open_dashboard(browser, base: str, user: str, password: str, *, viewport=(1280, 800)):
    """A new tab (its own cookie jar) on the dashboard, logged in through the login form."""
    ctx = await browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = await ctx.new_page()
    await page.goto(base)
    await page.fill("#login-form input[name=user]", user)
    await page.fill("#login-form input[name=password]", password)
    await page.click("#login-form button")
    await page.wait_for_selector("#conn[data-state=live]", timeout=10_000)
    return page


def latents(n: int = 8, seed: int = 0) -> list:
    """`n` latents of noise frames from the untrained dp-encoder of `seed` (the server holds its decoder)."""
    from camera_client.anonymize import create_anonymizer
    from pvad.config import DpEncoderAnonymizer

    enc = create_anonymizer(DpEncoderAnonymizer(checkpoint=None, seed=seed))
    rng = np.random.default_rng(seed)
    return [enc((rng.random((240, 320, 3)) * 255).astype(np.uint8)) for _ in range(n)]


async def stream_camera(address: str, tls, camera: str, payloads: list, *, fps: float, stop: asyncio.Event,
                        first_seq: int | None = None, max_frames: int | None = None) -> dict:
    """One camera on one Ingest stream, a frame every 1/`fps` s (capture time now) until `stop` or
    `max_frames`; returns how many frames went out and when the last one did (time.time())."""
    from camera_client.client import make_frame
    from pvad.channel import secure_channel
    from pvad.v1 import pvad_pb2_grpc

    seq = first_seq if first_seq is not None else time.time_ns() // 1000
    out = {"sent": 0, "acked": 0, "last_sent": None}

    async def frames():
        t_next = time.monotonic()
        while not stop.is_set() and (max_frames is None or out["sent"] < max_frames):
            yield make_frame(camera, seq + out["sent"], time.time_ns(), payloads[out["sent"] % len(payloads)])
            out["sent"] += 1
            out["last_sent"] = time.time()
            t_next += 1.0 / fps
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))

    async with secure_channel(address, tls) as ch:
        async for _ack in pvad_pb2_grpc.IngestStub(ch).Stream(frames()):
            out["acked"] += 1
    return out


async def until(page, js: str, timeout: float = 5.0, interval: float = 0.02):
    """Poll ``page.evaluate(js)`` until it is truthy; returns that value. (Playwright's wait_for_function
    evaluates strings, which the dashboard's Content-Security-Policy forbids.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = await page.evaluate(js)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{js} still false after {timeout} s")
        await asyncio.sleep(interval)
