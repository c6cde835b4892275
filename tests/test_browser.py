"""The page in a real browser (Debian's chromium driven by Playwright): upload a clip, see the ranked matches with
their thumbnails, click a span and the library video plays from there; the library view's keyframe strips and the
duplicates view render their thumbnails."""

from __future__ import annotations

import shutil

import httpx
import pytest

from sora_search.types import Match
from tests.media import make_testsrc
from tests.serving import CHROMIUM, CHROMIUM_ARGS, build_index, needs_browser, server

pytestmark = needs_browser


@pytest.fixture(scope="module")
def idx(media_dir, tmp_path_factory):
    return build_index(media_dir, tmp_path_factory.mktemp("browser"))


def test_upload_see_matches_and_play_from_a_span(idx, media_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    with server(idx) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + "/")
            page.wait_for_selector("#library:has-text('4 videos indexed')")
            page.set_input_files("#file", str(media_dir / "probe_a.mp4"))
            page.wait_for_selector(".match", timeout=60_000)
            assert page.inner_text(".match .name") == "pan_a.mp4"
            page.wait_for_selector(".match .track button.span")
            page.wait_for_function("""() => {
                const imgs = [...document.querySelectorAll('.match:first-child .thumbs img')];
                return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
            }""", timeout=30_000)
            span = page.locator(".match:first-child .track button.span").first
            start = float(span.get_attribute("data-start") or "nan")
            span.click()
            page.wait_for_function("() => { const v = document.getElementById('player');"
                                   " return !v.paused && v.currentTime > 0; }", timeout=30_000)
            now = page.evaluate("document.getElementById('player').currentTime")
            assert start <= now < start + 2.0, (start, now)
            page.evaluate("document.getElementById('player').pause()")
            shot = tmp_path / "sora-serve.png"
            page.screenshot(path=str(shot), full_page=True)
            try:
                shutil.copy(shot, "/tmp/sora-serve.png")
            except OSError:
                pass

            black = make_testsrc(tmp_path / "black.mp4", 3, pattern="color")  # the page says it is blank
            page.set_input_files("#file", str(black))
            page.wait_for_selector("#status:has-text('black.mp4 is blank throughout')", timeout=60_000)
            assert page.locator(".match").count() == 0 and page.locator("#player-box").is_hidden()

            # The options' text check goes with the upload; the probe shows no text, so its match stands (or, on a
            # server without tesseract, the page shows the one-line error).
            page.click("#drop details summary")
            page.check("#read-text")
            page.evaluate("""() => { window.sent = []; const append = FormData.prototype.append;
                FormData.prototype.append = function (k, v) { window.sent.push([k, String(v)]);
                                                              return append.apply(this, arguments); }; }""")
            page.set_input_files("#file", str(media_dir / "probe_a.mp4"))
            page.wait_for_function("() => window.sent.some(([k, v]) => k === 'read_text' && v === 'true')",
                                   timeout=10_000)
            page.wait_for_selector(".match, #status:has-text('tesseract')", timeout=60_000)

            # Every view at once: the picture-in-picture probe's match says it was found in part of the clip, as the
            # API answers for the same upload.
            page.uncheck("#read-text")
            page.select_option("#views", "thorough")
            page.set_input_files("#file", str(media_dir / "probe_pip.mp4"))
            page.wait_for_selector(".match:has-text('pan_a.mp4')", timeout=60_000)
            with open(media_dir / "probe_pip.mp4", "rb") as f:
                api = httpx.post(url + "/api/query", files={"file": ("probe_pip.mp4", f, "video/mp4")},
                                 data={"views": "thorough"}, timeout=60).json()["matches"][0]
            assert api["view"] != "full" and api["region"] is not None, api
            said = Match(api["path"], api["score"], (), api["view"], tuple(api["region"])).found_in
            assert page.inner_text(".match:first-child .found") == f"Found in {said}."
            page.screenshot(path=str(tmp_path / "sora-serve-found-in.png"), full_page=True)

            page.click("nav a[href='#videos']")
            page.wait_for_selector("#videos-status:has-text('Showing 4 of 4 videos')")
            page.fill("#video-q", "pan_")
            page.press("#video-q", "Enter")
            page.wait_for_selector("#videos-status:has-text('Showing 2 of 2 videos')")
            assert page.locator("#video-list .video .name").all_inner_texts() == ["pan_a.mp4", "pan_b.mp4"]
            page.wait_for_function("""() => {
                const imgs = [...document.querySelectorAll('#video-list .video:first-child .strip img')];
                return imgs.length > 1 && imgs.every(i => i.complete && i.naturalWidth > 0);
            }""", timeout=30_000)
            first = page.locator("#video-list .video:first-child .strip .thumb").first
            assert first.inner_text() == "00:00"
            page.screenshot(path=str(tmp_path / "sora-serve-library.png"), full_page=True)

            page.click("nav a[href='#duplicates']")
            page.wait_for_selector(".pair", timeout=60_000)
            page.wait_for_function("""() => {
                const imgs = [...document.querySelectorAll('.pair:first-child .side img')];
                return imgs.length > 1 && imgs.every(i => i.complete && i.naturalWidth > 0);
            }""", timeout=30_000)
            assert not errors, errors
        finally:
            browser.close()
