"""The web console end to end: headless Debian Chromium (driven by Playwright from PyPI, never a
downloaded browser) against the whole service running in this process (API + embedded worker).

Screenshots go to $VSR_TEST_ARTIFACTS/console (or pytest's tmp dir); the path is printed.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from service.settings import load_settings
from tests.media import make_test_clip
from tests.support.embedded import drain, isolated
from tests.support.ports import free_port
from tests.support.service import ApiTenant, make_tenant
from vsr.client import VsrClient
from vsr.serve import ServiceThreads

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FRAMES = 12

# Every form control has an accessible name (a <label>, aria-label, or its own text).
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, button, progress')]
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.textContent.trim())
  .map((el) => el.outerHTML)"""
# Mean absolute deviation of a canvas' RGB values: 0 for a blank (single colour) canvas.
CANVAS_SPREAD = """(id) => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let sum = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) { sum += d[i] + d[i + 1] + d[i + 2]; n += 3; }
  const mean = sum / n;
  let dev = 0;
  for (let i = 0; i < d.length; i += 4) dev += Math.abs(d[i] - mean) + Math.abs(d[i + 1] - mean);
  return dev / (2 * n / 3);
}"""
CANVAS_DIFF = """([a, b]) => {
  const get = (id) => { const c = document.getElementById(id);
    return c.getContext('2d').getImageData(0, 0, c.width, c.height).data; };
  const x = get(a), y = get(b);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff += Math.abs(x[i] - y[i]);
  return diff / x.length;
}"""
# Mean difference between the "before" frame (the input enlarged x4, nearest neighbour) and the
# "after" frame averaged back over 4x4 blocks: small only when both show the same frame.
FRAME_MISMATCH = """() => {
  const data = (id) => { const c = document.getElementById(id);
    return [c.width, c.height, c.getContext('2d').getImageData(0, 0, c.width, c.height).data]; };
  const [w, h, before] = data('before-canvas');
  const after = data('after-canvas')[2];
  let diff = 0, n = 0;
  for (let y = 0; y + 4 <= h; y += 4) for (let x = 0; x + 4 <= w; x += 4) for (let ch = 0; ch < 3; ch++) {
    let sum = 0;
    for (let dy = 0; dy < 4; dy++)
      for (let dx = 0; dx < 4; dx++) sum += after[((y + dy) * w + x + dx) * 4 + ch];
    diff += Math.abs(sum / 16 - before[((y + 1) * w + x + 1) * 4 + ch]);
    n += 1;
  }
  return diff / n;
}"""
SNAPSHOT = "(id) => Array.from(document.getElementById(id).getContext('2d').getImageData(0, 0, 32, 24).data)"
# A drop event carrying a real File, as a drag from the desktop delivers it.
MAKE_DROP = """([name, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type: 'video/mp4' }));
  return transfer;
}"""
WATCH_UPLOAD = """() => {
  window.uploadProgress = [];
  const bar = document.getElementById('upload-progress');
  new MutationObserver(() => window.uploadProgress.push(bar.value))
    .observe(document.getElementById('upload-progress-text'), { childList: true, characterData: true,
                                                                 subtree: true });
}"""


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("VSR_TEST_ARTIFACTS")
    folder = Path(root) / "console" if root else tmp_path_factory.mktemp("console-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def tenant() -> ApiTenant:
    return make_tenant("acme")


@pytest.fixture(scope="module")
def other_tenant() -> ApiTenant:
    return make_tenant("globex")


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, tenant: ApiTenant, other_tenant: ApiTenant
) -> Iterator[ServiceThreads]:
    settings = load_settings(
        **isolated("console"),
        data_dir=tmp_path_factory.mktemp("console-data"),
        tenants=[tenant.config, other_tenant.config],
        progress_interval_s=0,
    )
    running = ServiceThreads(settings, port=free_port()).start()
    yield running
    drain(running.url, [tenant.key, other_tenant.key])
    running.stop()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=FRAMES, width=32, height=24)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield opened
    context.close()
    # no script error and no CSP violation; the only failed requests are the test's deliberate ones
    refused = "Failed to load resource: the server responded with a status of {}"
    expected = {refused.format("401 (Unauthorized)"), refused.format("415 (Unsupported Media Type)")}
    assert [e for e in errors if e not in expected] == [], errors


def throttled(upload_bytes_per_s: int) -> dict[str, object]:
    """DevTools network conditions: the uplink limited (-1: not limited)."""
    return {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": upload_bytes_per_s}


def sign_in(page: Page, service: ServiceThreads, key: str) -> None:
    page.goto(service.url)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def test_console_upload_result_slider_profile_download(
    page: Page, service: ServiceThreads, tenant: ApiTenant, clip: Path, artifacts: Path, tmp_path: Path
) -> None:
    # Sign-in: a wrong key is refused with a message, the right one opens the console.
    sign_in(page, service, "vsr_not_a_key")
    expect(page.locator("#signin-error")).to_have_text("This API key was not accepted.")
    page.screenshot(path=artifacts / "01-sign-in-refused.png")
    page.get_by_label("API key").fill(tenant.key)
    page.keyboard.press("Enter")  # the form works from the keyboard
    page.wait_for_selector("#dropzone")
    assert page.evaluate(UNLABELLED) == []

    # Upload progress, seen on a throttled uplink: 2 MB that the service refuses once received.
    junk = tmp_path / "not-a-video.mp4"
    junk.write_bytes(b"\0" * 2_000_000)
    page.locator("#file-input").set_input_files(junk)
    page.evaluate(WATCH_UPLOAD)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", throttled(1_000_000))
    page.get_by_role("button", name="Upload and upscale ×4").click()
    page.wait_for_function("() => window.uploadProgress.some((v) => v > 0 && v < 100)", timeout=20_000)
    page.screenshot(path=artifacts / "02-uploading.png")
    expect(page.locator("#upload-error")).to_contain_text("Upload failed: ", timeout=30_000)
    cdp.send("Network.emulateNetworkConditions", throttled(-1))
    cdp.detach()
    seen = page.evaluate("window.uploadProgress")
    assert seen[-1] == 100 and len({v for v in seen if 0 < v < 100}) >= 3, seen
    expect(page.locator("#upload-error")).to_contain_text("does not start like a video container")
    page.screenshot(path=artifacts / "03-upload-refused.png")

    # Drag and drop the clip onto the drop zone (a real drop event with a File) and upload it.
    transfer = page.evaluate_handle(MAKE_DROP, [clip.name, base64.b64encode(clip.read_bytes()).decode()])
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#file-chosen")).to_contain_text("clip.mp4 (")
    expect(page.locator("#upload-error")).to_be_empty()
    page.get_by_label("Quality (CRF)").fill("20")
    page.get_by_role("button", name="Upload and upscale ×4").click()

    # The job page follows the job live until it succeeds.
    page.wait_for_url("**/#/jobs/*")
    job_id = page.url.rsplit("/", 1)[-1]
    page.wait_for_selector("#job-status .badge-succeeded", timeout=90_000)
    job = httpx.get(f"{service.url}/v1/jobs/{job_id}", headers=tenant.headers).json()
    assert job["status"] == "succeeded" and job["params"]["crf"] == 20
    expect(page.locator(".job-progress")).to_have_text(f"{FRAMES}/{FRAMES} frames")
    expect(page.locator(".job-card .facts")).to_contain_text(
        re.compile(r"Speed\s*\d+\.\d+ frames/s \(average\)")
    )

    # Before/after comparison: both frames drawn, different, and the divider moves.
    page.wait_for_selector("#compare[data-ready=true]", timeout=30_000)
    width, height = job["output"]["width"], job["output"]["height"]
    assert page.evaluate("[document.getElementById('after-canvas').width, "
                         "document.getElementById('after-canvas').height]") == [width, height]  # fmt: skip
    assert page.evaluate(CANVAS_SPREAD, "after-canvas") > 5
    assert page.evaluate(CANVAS_SPREAD, "before-canvas") > 5
    assert page.evaluate(CANVAS_DIFF, ["before-canvas", "after-canvas"]) > 0.5  # nearest x4 vs model
    assert page.evaluate(FRAME_MISMATCH) < 8  # the same frame on both sides (neighbours differ by 20+)
    page.screenshot(path=artifacts / "04-result.png", full_page=True)
    divider = page.get_by_label("Divider (drag the picture or use the arrow keys)")
    divider.focus()
    for _ in range(20):
        page.keyboard.press("ArrowLeft")
    expect(page.locator("#compare")).to_have_attribute("data-position", "30")
    clip_path = page.evaluate("getComputedStyle(document.getElementById('after-canvas')).clipPath")
    assert clip_path == "inset(0px 0px 0px 30%)", clip_path
    box = page.locator("#compare").bounding_box()
    assert box is not None and box["width"] > 300  # enlarged for a laptop screen
    page.mouse.move(box["x"] + 0.8 * box["width"], box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.75 * box["width"], box["y"] + box["height"] / 2)
    page.mouse.up()
    expect(page.locator("#compare")).to_have_attribute("data-position", "75")
    page.locator("#compare-section").screenshot(path=artifacts / "05-slider-moved.png")
    middle = page.evaluate(SNAPSHOT, "after-canvas")
    page.get_by_label("Frame", exact=True).focus()
    page.keyboard.press("Home")
    page.wait_for_selector("#compare[data-frame='1']")
    expect(page.locator("#compare-frame-value")).to_have_text(f"1 of {FRAMES}")
    first = page.evaluate(SNAPSHOT, "after-canvas")
    assert sum(abs(a - b) for a, b in zip(first, middle, strict=True)) / len(first) > 10  # another frame
    assert page.evaluate(FRAME_MISMATCH) < 8

    # Temporal profile: one row per frame, not blank.
    page.wait_for_selector("#profile-canvas[data-ready=true]", timeout=30_000)
    size = page.evaluate("[document.getElementById('profile-canvas').width, "
                         "document.getElementById('profile-canvas').height]")  # fmt: skip
    assert size == [width, FRAMES]
    assert page.evaluate(CANVAS_SPREAD, "profile-canvas") > 5
    page.locator("#profile-section").screenshot(path=artifacts / "06-temporal-profile.png")

    # Per-stage timings and MACs, as the job reports them.
    for stage in job["timings"]:
        assert page.locator(f"#timings-section tr[data-stage='{stage}']").count() == 1
    assert page.locator("#macs-section tbody tr").count() == 3
    assert f"{job['macs']['total'] / 1e9:.2f} G" in page.locator("#macs-section tfoot").inner_text()

    # Download: the same bytes as the API's result.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download result").click()
    saved = Path(download.value.path())
    result = httpx.get(f"{service.url}/v1/jobs/{job_id}/result", headers=tenant.headers)
    assert download.value.suggested_filename == f"{job_id}_x4.mp4"
    assert saved.read_bytes() == result.content and result.content[4:8] == b"ftyp"
    assert page.evaluate(UNLABELLED) == []

    # After a reload the key is still there (session storage) and the "before" comes from the API.
    page.reload()
    page.wait_for_selector("#compare[data-ready=true]", timeout=30_000)
    expect(page.locator("#compare-section figcaption")).to_contain_text("the stored input")
    assert page.evaluate(FRAME_MISMATCH) < 8

    # The job list shows it; signing out forgets the key.
    page.get_by_role("link", name="← All jobs").click()
    row = page.locator(f"#jobs-table tr[data-job-id='{job_id}']")
    expect(row).to_have_attribute("data-status", "succeeded")
    expect(row).to_contain_text("clip.mp4")
    page.screenshot(path=artifacts / "07-job-list.png")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("#api-key")
    assert page.evaluate("sessionStorage.getItem('vsr.apiKey')") is None
    print(f"screenshots in {artifacts}")


def test_console_files_and_input_route(
    service: ServiceThreads, tenant: ApiTenant, other_tenant: ApiTenant, clip: Path
) -> None:
    index = httpx.get(service.url)
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in index.headers["content-security-policy"]
    script = httpx.get(f"{service.url}/console/js/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    for bad in ("/console/../routes_console.py", "/console/%2e%2e/routes_console.py", "/console/nope.js"):
        assert httpx.get(f"{service.url}{bad}").status_code == 404, bad
    assert "/v1/jobs/{job_id}/input" in httpx.get(f"{service.url}/openapi.json").json()["paths"]

    with VsrClient(service.url, tenant.key) as client:
        job = client.wait(client.submit(clip).id, timeout=90)
        assert job.status == "succeeded"
        url = f"{service.url}/v1/jobs/{job.id}/input"
        stored = httpx.get(url, headers=tenant.headers)
        assert stored.status_code == 200 and stored.content == clip.read_bytes()
        assert stored.headers["content-type"] == "video/mp4"
        assert httpx.get(f"{url}?redirect=false", headers=tenant.headers).json() == {"url": url}
        assert httpx.get(url).status_code == 401
        for response, code in (
            (httpx.get(url, headers=other_tenant.headers), "job_not_found"),
            (httpx.get(f"{service.url}/v1/jobs/nope/input", headers=tenant.headers), "job_not_found"),
        ):
            assert response.status_code == 404 and response.json()["error"]["code"] == code
        client.delete_files(job.id)
        gone = httpx.get(url, headers=tenant.headers)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "input_deleted"
