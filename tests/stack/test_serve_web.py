"""`qsched serve web` alone, next to a stack started some other way: it serves the login page,
takes a person's token and shows them the board; a bad token gets one line and no session."""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.support import processes

pytestmark = pytest.mark.slow


def test_serve_web_alone(qsched_up, tmp_path):
    if qsched_up.identity is None:
        pytest.skip("needs a stack this session started")
    web = f"127.0.0.1:{processes.free_port()}"
    log = tmp_path / "web.log"
    args = ["serve", "web", "--web-address", web, "--scheduler-address", qsched_up.address]
    server = processes.start([*args, "--data-dir", str(tmp_path / "data")], log)
    try:
        processes.wait_for_line(log, f"qsched web serving on http://{web}", server)
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

        def login(token: str) -> tuple[int, str]:
            form = urllib.parse.urlencode({"token": token}).encode()
            try:
                with browser.open(f"http://{web}/login", data=form, timeout=10) as page:
                    return page.status, page.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()

        status, page = login("not-a-token")
        assert status == 401 and '<p class="refused">UNAUTHENTICATED ' in page
        assert not list(jar)
        token = qsched_up.identity.token_for("web-alone")
        status, page = login(token)  # redirected to the board
        assert status == 200 and 'data-page="board"' in page and '<span id="who">web-alone</span>' in page
        assert [c.name for c in jar] == ["qsched_session"] and token not in next(iter(jar)).value
    finally:
        code = processes.stop(server)
    assert code == 0, log.read_text()
