"""The operator dashboard in a real browser: Debian's Chromium driven by Playwright (never a downloaded
browser). Skipped where either is absent (``make services`` installs chromium as root)."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import client_tls, run
from web_support import PASSWORD, make_users, web_config

pytest.importorskip("fastapi")
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed (the dev extra)")

from analysis_server.alarms import EventLog  # noqa: E402
from analysis_server.service import start_server  # noqa: E402
from pvad.bench.web import find_chromium, latents, launch_chromium, open_dashboard, stream_camera, until  # noqa: E402
from pvad.cluster.processes import free_port  # noqa: E402
from pvad.config import WebConfig  # noqa: E402
from pvad.v1 import pvad_pb2  # noqa: E402

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="no system Chromium (/usr/lib/chromium/chromium): apt-get install chromium")


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    return make_users(tmp_path_factory.mktemp("users") / "users.json")


@pytest.fixture(scope="module")
def payloads():
    return latents(4)


def base(srv) -> str:
    return f"http://127.0.0.1:{srv.web_port}/"


async def feed(srv, pki, payloads, cameras=("cam-1",), frames=5, fps=20.0):
    stop = asyncio.Event()
    return await asyncio.gather(*(stream_camera(f"127.0.0.1:{srv.port}", client_tls(pki, f"camera/{c}"), c, payloads,
                                                fps=fps, stop=stop, max_frames=frames) for c in cameras))


async def raise_alarm(srv, camera="cam-1", seq=1) -> int:
    ev = await srv.hub.publish_alarm(camera_id=camera, kind=pvad_pb2.ALARM_RAISED, seq=seq, score=0.7, confidence=0.9)
    return ev.event_id


def test_login_roles_live_view_and_offline_in_the_browser(pki, tmp_path, analyzer, users_file, payloads):
    from playwright.async_api import async_playwright

    async def scenario():
        srv = await start_server(web_config(pki, tmp_path, users_file), analyzer=analyzer)
        try:
            await feed(srv, pki, payloads, frames=5, fps=20.0)
            eid = await raise_alarm(srv)
            async with async_playwright() as p:
                browser = await launch_chromium(p)
                ctx = await browser.new_context()
                page = await ctx.new_page()
                await page.goto(base(srv))
                await page.fill("#login-form input[name=user]", "olga")
                await page.fill("#login-form input[name=password]", "wrong password")
                await page.click("#login-form button")
                await until(page, "() => document.querySelector('#login-error').textContent.length > 0")
                assert await page.is_visible("#login") and not await page.is_visible("#dash")
                cookie_js = await page.evaluate("document.cookie")

                viewer = await open_dashboard(browser, base(srv), "vic", PASSWORD)
                await viewer.wait_for_selector(f"#alarms li[data-id='{eid}']")
                v = {"view": await viewer.locator(".tile .view").count(),
                     "ack": await viewer.locator("button.ack").count(),
                     "who": await viewer.text_content("#who")}

                op = await open_dashboard(browser, base(srv), "olga", PASSWORD)
                op_cookie_js = await op.evaluate("document.cookie")
                await op.wait_for_selector(f"#alarms li[data-id='{eid}'] button.ack")
                await op.click(".tile[data-camera='cam-1'] .view")
                await until(op,
                    "() => { const i = document.querySelector(\".tile[data-camera='cam-1'] .live img\");"
                    " return i && i.complete && i.naturalWidth > 0; }")
                size = await op.evaluate(
                    "() => { const i = document.querySelector(\".tile[data-camera='cam-1'] .live img\");"
                    " return [i.naturalWidth, i.naturalHeight, i.src.slice(0, 5)]; }")
                # the camera streams again with the page open, then stops
                sent = await feed(srv, pki, payloads, frames=20, fps=20.0)
                await until(op, "() => document.querySelector(\".tile[data-camera='cam-1']\").dataset.state === 'offline'",
                            interval=0.01)
                offline_after = time.time() - sent[0]["last_sent"]
                frames = await op.text_content(".tile[data-camera='cam-1'] .frames")
                await browser.close()
            return cookie_js, v, op_cookie_js, size, offline_after, frames
        finally:
            await srv.stop(0)

    cookie_js, viewer, op_cookie_js, size, offline_after, frames = run(scenario())
    assert cookie_js == "" and op_cookie_js == ""  # HttpOnly: the page's scripts never see the session
    assert viewer == {"view": 0, "ack": 0, "who": "vic (viewer)"}
    assert size == [320, 240, "blob:"]
    assert frames == "25"
    # offline after twice the frame interval (20 fps) + 1 s; the page checks every 50 ms, the test polls every 10 ms
    assert 1.1 <= offline_after < 1.1 + 0.2


def test_ack_in_one_tab_shows_in_every_tab_within_a_second(pki, tmp_path, analyzer, users_file):
    from playwright.async_api import async_playwright

    async def scenario():
        srv = await start_server(web_config(pki, tmp_path, users_file), analyzer=analyzer)
        try:
            async with async_playwright() as p:
                browser = await launch_chromium(p)
                tabs = [await open_dashboard(browser, base(srv), u, PASSWORD) for u in ("olga", "root", "vic")]
                t0 = time.time()
                eid = await raise_alarm(srv)
                for tab in tabs:
                    await tab.wait_for_selector(f"#alarms li[data-id='{eid}']", timeout=1000)
                shown = time.time() - t0
                li = f"#alarms li[data-id='{eid}']"
                await tabs[0].fill(f"{li} input[name=note]", "checked on site")
                t1 = time.time()
                await tabs[0].click(f"{li} button.ack")
                for tab in tabs:
                    await tab.wait_for_selector(f"{li} .acked", timeout=1000)
                acked = time.time() - t1
                texts = [await tab.text_content(f"{li} .acked") for tab in tabs]
                await browser.close()
            return shown, acked, texts, srv.hub.log.audit_rows()
        finally:
            await srv.stop(0)

    shown, acked, texts, audit = run(scenario())
    assert shown < 1.0 and acked < 1.0
    assert all(t.startswith("acked by olga at ") and t.endswith(": checked on site") for t in texts)
    assert [(r.user, r.action) for r in audit if r.action == "ack"] == [("olga", "ack")]


def test_alarm_list_holds_every_event_once_after_a_server_restart(pki, tmp_path, analyzer, users_file):
    from playwright.async_api import async_playwright

    port = free_port()
    cfg = web_config(pki, tmp_path, users_file, web=WebConfig(
        enabled=True, listen=f"127.0.0.1:{port}", users_file=users_file, session_secret_file=tmp_path / "secret"))

    async def scenario():
        srv = await start_server(cfg, analyzer=analyzer)
        async with async_playwright() as p:
            browser = await launch_chromium(p)
            page = await open_dashboard(browser, base(srv), "olga", PASSWORD)
            for k in range(3):
                await raise_alarm(srv, seq=k)
            await until(page, "() => document.querySelectorAll('#alarms li').length === 3")
            await srv.stop(0)  # gone at once, the tab still open
            await page.wait_for_selector("#conn[data-state=reconnecting]", timeout=5000)
            missed = EventLog(tmp_path / "events.sqlite")  # alarms the tab did not see (committed while it was away)
            for k in range(3, 5):
                missed.append(camera_id="cam-2", kind=pvad_pb2.ALARM_RAISED, seq=k, score=0.8, confidence=0.9)
            missed.close()
            srv = await start_server(cfg, analyzer=analyzer)
            try:
                await page.wait_for_selector("#conn[data-state=live]", timeout=10_000)
                for k in range(5, 7):
                    await raise_alarm(srv, seq=k)
                await until(page, "() => document.querySelectorAll('#alarms li').length >= 7")
                await asyncio.sleep(0.5)
                ids = await page.evaluate("[...document.querySelectorAll('#alarms li')].map(li => +li.dataset.id)")
                opens = await page.evaluate("window.pvad.opens")
                logged = [e.event_id for e in srv.hub.log.since(0)]
            finally:
                await browser.close()
                await srv.stop(0)
        return ids, logged, opens

    ids, logged, opens = run(scenario())
    assert len(logged) == 7
    assert sorted(ids) == logged  # every event id, each exactly once
    assert opens == 2  # the browser's own reconnect (Last-Event-ID), no page reload


def test_layout_desktop_and_phone(pki, tmp_path, analyzer, users_file, payloads):
    """A screenshot at each size, compared by element positions (not pixels)."""
    from playwright.async_api import async_playwright

    async def scenario():
        srv = await start_server(web_config(pki, tmp_path, users_file), analyzer=analyzer)
        try:
            await feed(srv, pki, payloads, cameras=("cam-1", "cam-2"), frames=3)
            await raise_alarm(srv)
            boxes = {}
            async with async_playwright() as p:
                browser = await launch_chromium(p)
                for size in ((1280, 800), (390, 844)):
                    page = await open_dashboard(browser, base(srv), "olga", PASSWORD, viewport=size)
                    await until(page, "() => document.querySelectorAll('.tile').length === 2")
                    await page.screenshot(path=str(tmp_path / f"dashboard-{size[0]}x{size[1]}.png"))
                    boxes[size] = {
                        "tiles": [await page.locator(".tile").nth(i).bounding_box() for i in range(2)],
                        "alarms": await page.locator("#alarms-panel").bounding_box(),
                        "scroll": await page.evaluate("[document.documentElement.scrollWidth, innerWidth]"),
                    }
                await browser.close()
            return boxes
        finally:
            await srv.stop(0)

    boxes = run(scenario())
    wide, phone = boxes[(1280, 800)], boxes[(390, 844)]
    t1, t2 = wide["tiles"]
    assert t1["y"] == t2["y"] and t2["x"] > t1["x"] + t1["width"] - 1  # tiles side by side
    assert wide["alarms"]["x"] >= t2["x"] + t2["width"] and wide["alarms"]["y"] == t1["y"]  # the list to the right
    p1, p2 = phone["tiles"]
    assert p1["x"] == p2["x"] and p2["y"] >= p1["y"] + p1["height"]  # one column
    assert phone["alarms"]["y"] >= p2["y"] + p2["height"]  # the list below the tiles
    assert phone["scroll"][0] <= phone["scroll"][1] == 390  # no horizontal scroll
    assert all(b["x"] >= 0 and b["x"] + b["width"] <= 390 for b in (p1, p2, phone["alarms"]))
