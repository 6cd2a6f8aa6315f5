"""The API's pages in a real browser: Debian's chromium, headless, against the API and a worker
from their PEX files, a real redis-server and NsJail, keys on. The stack and the browser share a
network namespace with only loopback (corral_testbed.browser), so nothing they do can leave the
machine; the browser's own request log must show no request to any other host all the same.

Each state is saved as a screenshot under dist/playground/ (TEST_ARTIFACTS_DIR, set by ./pants);
the playground's size and time to interactive are printed, not asserted.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from corral_testbed.browser import Tab, chromium, loopback_only, require_chromium
from corral_testbed.redis_server import RedisServerProcess, require_redis_server
from corral_testbed.services import Corral, corral

SHOTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", "dist")) / "playground"
FINISHED = "document.getElementById('status').dataset.done !== undefined"
OUTPUT = "document.getElementById('output').textContent"
# How many of the editor's tokens are drawn in a colour other than their line's (syntax highlighting).
HIGHLIGHTED = """(() => {
  const lines = [...document.getElementById('editor').shadowRoot.querySelectorAll('.cm-line')];
  return lines.flatMap((line) => [...line.querySelectorAll('span')]
    .filter((token) => getComputedStyle(token).color !== getComputedStyle(line).color)).length;
})()"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corral, Tab]]:
    require_redis_server()
    executable = require_chromium()
    with loopback_only():
        redis = RedisServerProcess(tmp_path_factory.mktemp("redis"))
        redis.start()
        try:
            with corral(redis.url, tmp_path_factory.mktemp("logs"), workers=1, auth=True) as service, chromium(executable) as tab:
                yield service, tab
        finally:
            redis.stop()


@pytest.fixture(scope="module")
def playground(stack: tuple[Corral, Tab]) -> Tab:
    """The playground, opened, with a key typed in and the languages loaded."""
    service, tab = stack
    tab.open(f"{service.url}/play")
    key = service.create_key("browser")
    tab.evaluate(f"(() => {{ const field = document.getElementById('key'); field.value = {key!r}; field.dispatchEvent(new Event('change')); }})()")
    tab.wait_for("document.querySelectorAll('#language option').length > 1")
    return tab


def run(tab: Tab, language: str, code: str, *, typed: bool = False) -> None:
    tab.evaluate(f"(() => {{ const picker = document.getElementById('language'); picker.value = {language!r}; picker.dispatchEvent(new Event('change')); }})()")
    if typed:
        # Typed into the editor as a person would, through the browser's input pipeline.
        tab.evaluate("editor.setValue(''); document.getElementById('editor').shadowRoot.querySelector('.cm-content').focus(); 1")
        tab.call("Input.insertText", text=code)
    else:
        tab.evaluate(f"editor.setValue({code!r}); 1")
    assert tab.evaluate("editor.getValue()") == code
    tab.evaluate("document.getElementById('run').click(); 1")


def test_the_namespace_reaches_nothing_but_loopback(stack: tuple[Corral, Tab]) -> None:
    # The test runs in the stack's and the browser's namespace (the fixture's block).
    with socket.socket() as probe:
        with pytest.raises(OSError) as refused:
            probe.connect(("192.0.2.1", 80))
        assert refused.value.errno == errno.ENETUNREACH


def test_swagger_ui_renders_every_operation_from_local_files(stack: tuple[Corral, Tab]) -> None:
    service, tab = stack
    tab.open(f"{service.url}/schema/swagger")
    tab.wait_for("document.querySelectorAll('.opblock').length > 5")
    paths = tab.evaluate("[...document.querySelectorAll('.opblock-summary-path')].map((e) => e.textContent)")
    assert "/execute" in paths and "/jobs/{job_id}/events" in paths
    assert tab.evaluate("window.__violations") == []
    tab.screenshot(SHOTS / "swagger.png")


def test_print_1_in_python_typed_into_the_editor(playground: Tab) -> None:
    started = playground.evaluate("performance.getEntriesByType('navigation')[0].startTime")
    ready_ms = int(playground.evaluate("document.documentElement.dataset.ready")) - int(started)
    run(playground, "python", "print(1)", typed=True)
    playground.wait_for(FINISHED)
    assert playground.evaluate("document.getElementById('status').textContent").startswith("COMPLETED: ok")
    assert playground.evaluate(OUTPUT) == "1\n"
    assert playground.evaluate(HIGHLIGHTED) > 0, "no token has a colour of its own"
    assert playground.evaluate("window.__violations") == []
    playground.screenshot(SHOTS / "python.png")
    urls = {event["requestId"]: urlsplit(event["request"]["url"]).path for event in playground.named("Network.requestWillBeSent")}
    page = [event for event in playground.named("Network.loadingFinished") if urls.get(event["requestId"], "").startswith("/play")]
    size = sum(event["encodedDataLength"] for event in page)
    report = f"playground: {len(page)} files, {size} bytes over the wire; interactive {ready_ms} ms after navigation"
    print(f"\n{report}")
    (SHOTS / "report.txt").write_text(report + "\n")


def test_a_c_program(playground: Tab) -> None:
    run(playground, "c", '#include <stdio.h>\nint main(void) { printf("hello from c\\n"); return 0; }\n')
    playground.wait_for(FINISHED)
    assert playground.evaluate(OUTPUT) == "hello from c\n"
    playground.screenshot(SHOTS / "c.png")


def test_test_cases_typed_in_the_page_are_judged(playground: Tab) -> None:
    playground.evaluate("addTest('2', '4\\n'); addTest('3', '7\\n'); 1")
    try:
        run(playground, "python", "print(int(input()) * 2)\n")
        playground.wait_for(FINISHED)
    finally:
        playground.evaluate("document.getElementById('tests').replaceChildren(); 1")
    verdicts = playground.evaluate("[...document.querySelectorAll('#test-results li')].map((li) => li.textContent)")
    assert verdicts[0] == "1: ok" and verdicts[1].startswith("2: wrong_answer")
    playground.screenshot(SHOTS / "tests.png")


def test_output_shows_while_the_program_still_sleeps(playground: Tab) -> None:
    code = "import time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second', flush=True)\n"
    run(playground, "python", code)
    playground.wait_for(f"{OUTPUT}.includes('first')")
    # The first line is on the page while the job has not finished, before the second exists.
    assert not playground.evaluate(FINISHED)
    assert "second" not in playground.evaluate(OUTPUT)
    playground.screenshot(SHOTS / "live.png")
    playground.wait_for(FINISHED)
    assert playground.evaluate(OUTPUT) == "first\nsecond\n"


def test_without_the_event_stream_the_page_long_polls_for_the_result(playground: Tab) -> None:
    # As with an API that has no stream (or a proxy that refuses one): the browser fails it.
    playground.call("Network.setBlockedURLs", urls=["*/events"])
    try:
        run(playground, "python", "print(2)\n")
        playground.wait_for(FINISHED)
    finally:
        playground.call("Network.setBlockedURLs", urls=[])
    assert playground.evaluate(OUTPUT) == "2\n"
    assert any("?wait=" in event["request"]["url"] for event in playground.named("Network.requestWillBeSent"))


def test_a_matplotlib_plot_is_shown_as_an_image(playground: Tab) -> None:
    assert "python-sci" in playground.evaluate("[...document.querySelectorAll('#language option')].map((o) => o.value)")
    code = (
        "import os\nimport matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "os.makedirs('out')\nplt.plot([1, 4, 9])\nplt.savefig('out/plot.png')\n"
    )
    run(playground, "python-sci", code)
    playground.wait_for(FINISHED, timeout_s=180)
    playground.wait_for("document.querySelector('#files img') && document.querySelector('#files img').complete")
    image = playground.evaluate("(() => { const i = document.querySelector('#files img'); return [i.alt, i.naturalWidth, i.src.slice(0, 5)]; })()")
    assert image[0] == "out/plot.png" and image[1] > 100 and image[2] == "blob:"
    playground.screenshot(SHOTS / "matplotlib.png")


def test_markup_a_program_prints_or_names_a_file_with_is_shown_as_text(playground: Tab) -> None:
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    code = f"import os\nos.makedirs('out')\nopen('out/<img src=x onerror=alert(3)>.txt', 'w').write('x')\nprint({hostile!r})\n"
    run(playground, "python", code)
    playground.wait_for(FINISHED)
    playground.wait_for("!!document.querySelector('#files a')")
    assert playground.evaluate(OUTPUT) == hostile + "\n"
    assert playground.evaluate("document.querySelector('#files a').textContent").startswith("out/<img src=x onerror=alert(3)>.txt")
    assert playground.evaluate("document.querySelectorAll('#output *:not(span), #files img').length") == 0
    assert playground.named("Page.javascriptDialogOpening") == []
    assert playground.evaluate("window.__violations") == []
    playground.screenshot(SHOTS / "markup.png")


def test_the_policy_blocks_an_inline_script_that_reached_the_page(playground: Tab) -> None:
    # As if a rendering bug had let markup in: the page's CSP still refuses to run it.
    playground.evaluate("document.getElementById('notice').insertAdjacentHTML('beforeend', '<img src=x onerror=\"window.__ran = 1\">'); 1")
    playground.wait_for("window.__violations.some((v) => v.startsWith('script-src'))", timeout_s=15)
    assert playground.evaluate("window.__ran") is None
    playground.evaluate("document.getElementById('notice').replaceChildren(); 1")


def test_the_key_stays_in_the_tab_and_a_shared_link_holds_code_and_language_only(playground: Tab) -> None:
    key = playground.evaluate("sessionStorage.getItem('corral.key')")
    assert key and playground.evaluate("[localStorage.length, document.cookie]") == [0, ""]
    code = '#include <stdio.h>\nint main(void) { puts("shared"); }\n'
    playground.evaluate(f"(() => {{ const picker = document.getElementById('language'); picker.value = 'c'; editor.setValue({code!r}); }})()")
    playground.evaluate("document.getElementById('share').click(); 1")
    link = playground.evaluate("location.href")
    assert "#" in link and key not in link
    playground.open("about:blank")
    playground.open(link)
    assert playground.evaluate("[editor.getValue(), document.getElementById('language').value]") == [code, "c"]
    # The key came back from the tab's session storage: the languages load again.
    playground.wait_for("document.querySelectorAll('#language option').length > 1")
    assert playground.evaluate("document.getElementById('key').value") == key


def test_no_request_goes_to_any_host_but_the_stacks(stack: tuple[Corral, Tab], playground: Tab) -> None:
    service, tab = stack
    requested = [event["request"]["url"] for event in tab.named("Network.requestWillBeSent")]
    assert any(url.endswith("/play/editor.js") for url in requested)
    others = [url for url in requested if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).netloc != urlsplit(service.url).netloc]
    assert others == []
