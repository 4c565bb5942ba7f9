"""Sign-in and browsers against a real gunicorn: redirects stay on the site, the cookie holds
a session id and never the token, logout ends the session in the database, cross-site form
posts are refused, and wrong tokens are rate-limited."""

from __future__ import annotations

import hashlib
import re

import pytest
import requests

from tests.helpers import make_csv
from tests.integration.conftest import WebServer

TOKEN = "correct horse battery staple, and more"
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}

#: next= values that must never take a browser off the site: each goes to "/".
OFF_SITE = [
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/%5Cevil.example",
    "/%5C%5Cevil.example",
    "https://evil.example/",
    "http:/evil.example",
    "javascript:alert(1)",
    "evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/%09/evil.example",
    "/%0d%0a/evil.example",
    "/\x00/evil.example",
    "/\u2028/evil.example",
    " /batches",
]


@pytest.fixture
def signed_web(database_url, tmp_path):
    server = WebServer(database_url, tmp_path, API_TOKEN=TOKEN, LOGIN_MAX_FAILURES="3")
    yield server
    server.stop()


def _another_server(database_url: str, logdir, **env: str) -> WebServer:
    logdir.mkdir()
    return WebServer(database_url, logdir, **env)


def _session() -> requests.Session:
    session = requests.Session()
    session.headers.update(HTML)
    return session


def _hidden_next(page: str) -> str:
    match = re.search(r'name="next" value="([^"]*)"', page)
    assert match, page
    return match.group(1)


def test_redirect_targets_off_the_site_go_home(signed_web, database_url, tmp_path):
    base = signed_web.base
    browser = _session()
    for target in OFF_SITE:
        # The form carries the cleaned target, and signing in goes there.
        form = browser.get(f"{base}/login", params={"next": target}, timeout=10)
        assert form.status_code == 200 and _hidden_next(form.text) == "/", target
        answer = browser.post(
            f"{base}/login", data={"token": TOKEN, "next": target}, allow_redirects=False, timeout=10
        )
        assert answer.status_code == 303 and answer.headers["Location"] == "/", target
    # A path on this site is kept as given, query string included.
    answer = browser.post(
        f"{base}/login",
        data={"token": TOKEN, "next": "/batches?status=completed"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.headers["Location"] == "/batches?status=completed"

    # Without a token /login sends the browser on at once: the same rules.
    open_web = _another_server(database_url, tmp_path / "open")
    try:
        for target in OFF_SITE:
            answer = requests.get(
                f"{open_web.base}/login", params={"next": target}, allow_redirects=False, timeout=10
            )
            assert answer.status_code == 303 and answer.headers["Location"] == "/", target
        # The issue's own example, written as a browser sends it.
        answer = requests.get(
            f"{open_web.base}/login?next=/%5Cevil.example", allow_redirects=False, timeout=10
        )
        assert answer.headers["Location"] == "/"
    finally:
        open_web.stop()


def test_the_cookie_holds_a_session_id_and_logout_ends_it(signed_web, db, database_url, tmp_path):
    base = signed_web.base
    browser = _session()
    bounced = browser.get(f"{base}/batches", allow_redirects=False, timeout=10)
    assert bounced.status_code == 303 and bounced.headers["Location"].startswith("/login?next=")

    signed_in = browser.post(
        f"{base}/login", data={"token": TOKEN, "next": "/"}, allow_redirects=False, timeout=10
    )
    assert signed_in.status_code == 303
    set_cookie = signed_in.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    session_id = browser.cookies["sentiment_session"]
    assert TOKEN not in set_cookie and session_id not in (TOKEN, "")
    assert len(session_id) >= 43  # 256 random bits, URL-safe base64

    # The database holds the id's hash, and neither the id nor the token.
    rows = db.execute("SELECT id_hash, signed_in_as, credential_hash FROM web_sessions").fetchall()
    assert len(rows) == 1
    id_hash, signed_in_as, credential_hash = rows[0]
    assert bytes(id_hash) == hashlib.sha256(session_id.encode()).digest()
    assert signed_in_as == "API_TOKEN"
    dump = " ".join(str(v) for v in rows[0])
    assert TOKEN not in dump and session_id not in dump
    assert bytes(credential_hash) == hashlib.sha256(TOKEN.encode()).digest()

    # The session opens the pages and the API alike.
    assert browser.get(f"{base}/", timeout=10).status_code == 200
    assert b"Sign out" in browser.get(f"{base}/", timeout=10).content
    copied = {"sentiment_session": session_id}
    assert requests.get(f"{base}/batches", cookies=copied, timeout=10).status_code == 200

    signed_out = browser.post(f"{base}/logout", allow_redirects=False, timeout=10)
    assert signed_out.status_code == 303 and signed_out.headers["Location"] == "/login"
    assert "sentiment_session=;" in signed_out.headers["Set-Cookie"]
    assert db.execute("SELECT count(*) FROM web_sessions").fetchone()[0] == 0
    # A copy of the cookie kept elsewhere no longer signs anyone in.
    replay = requests.get(f"{base}/batches", cookies=copied, timeout=10)
    assert replay.status_code == 401 and replay.headers["Content-Type"] == "application/problem+json"
    assert browser.get(f"{base}/batches", allow_redirects=False, timeout=10).status_code == 303

    # A session made with a token ends when API_TOKEN changes.
    browser.post(f"{base}/login", data={"token": TOKEN, "next": "/"}, timeout=10)
    kept = {"sentiment_session": browser.cookies["sentiment_session"]}
    assert requests.get(f"{base}/batches", cookies=kept, timeout=10).status_code == 200
    rotated = _another_server(database_url, tmp_path / "rotated", API_TOKEN=TOKEN + " (rotated)")
    try:
        assert requests.get(f"{rotated.base}/batches", cookies=kept, timeout=10).status_code == 401
    finally:
        rotated.stop()


def _upload(base: str, headers: dict[str, str]) -> requests.Response:
    return requests.post(
        f"{base}/batch/upload",
        files={"file": ("x.csv", make_csv(["good", "bad"]))},
        headers=headers,
        allow_redirects=False,
        timeout=30,
    )


CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", **HTML},
]


def _assert_refused(answer: requests.Response) -> None:
    assert answer.status_code == 403, answer.text
    if answer.headers["Content-Type"].startswith("application/problem+json"):
        assert answer.json()["type"] == "/problems/cross-site-request"
    else:  # a browser gets the problem as a page
        assert "Cross-site request refused" in answer.text


def test_cross_site_form_posts_are_refused_and_curl_is_not(web_server, db):
    base = web_server.base
    same_origin = {"Origin": base}
    kept = _upload(base, {})  # curl: no Origin, no Sec-Fetch-Site
    assert kept.status_code == 202
    batch_id = kept.json()["batch_id"]
    for headers in CROSS_SITE:
        _assert_refused(_upload(base, headers))
        _assert_refused(requests.post(f"{base}/batch/{batch_id}/cancel", headers=headers, timeout=10))
        _assert_refused(requests.delete(f"{base}/batch/{batch_id}", headers=headers, timeout=10))
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 1
    assert db.execute("SELECT status FROM batches").fetchone()[0] == "processing"
    # The service's own pages, and reads from anywhere, are unaffected.
    assert _upload(base, same_origin).status_code == 202
    assert _upload(base, {"Sec-Fetch-Site": "same-origin", **same_origin}).status_code == 202
    assert _upload(base, {"Sec-Fetch-Site": "same-origin", **HTML}).status_code == 303
    assert requests.get(f"{base}/batch/{batch_id}", headers=CROSS_SITE[0], timeout=10).status_code == 200
    cancelled = requests.post(f"{base}/batch/{batch_id}/cancel", headers=same_origin, timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_cross_site_posts_are_refused_with_a_token_too(signed_web, db):
    base = signed_web.base
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for headers in CROSS_SITE:
        _assert_refused(_upload(base, {**bearer, **headers}))
        _assert_refused(_upload(base, headers))
        # Sign-in and sign-out themselves cannot be forged either.
        login = requests.post(
            f"{base}/login", data={"token": TOKEN}, headers=headers, allow_redirects=False, timeout=10
        )
        _assert_refused(login)
        _assert_refused(requests.post(f"{base}/logout", headers=headers, timeout=10))
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM web_sessions").fetchone()[0] == 0
    assert _upload(base, bearer).status_code == 202  # curl with the token


def test_wrong_tokens_are_rate_limited(signed_web, db):
    base = signed_web.base
    browser = _session()
    for _ in range(3):  # LOGIN_MAX_FAILURES
        wrong = browser.post(f"{base}/login", data={"token": "guess", "next": "/"}, timeout=10)
        assert wrong.status_code == 401 and "not right" in wrong.text
    # Past the limit even the right token is refused, so a guesser learns nothing.
    refused = browser.post(
        f"{base}/login", data={"token": TOKEN, "next": "/"}, allow_redirects=False, timeout=10
    )
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "Too many wrong tokens" in refused.text and "sentiment_session" not in refused.cookies
    api = requests.get(f"{base}/batches", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert api.status_code == 429 and api.headers["Content-Type"] == "application/problem+json"
    assert api.json()["type"] == "/problems/too-many-failed-logins"
    assert int(api.headers["Retry-After"]) > 0
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200  # open endpoints stay open

    # When the window ends, the right token signs in; the count goes only with its window.
    db.execute("UPDATE login_failures SET window_ends_at = now()")
    signed_in = browser.post(
        f"{base}/login", data={"token": TOKEN, "next": "/"}, allow_redirects=False, timeout=10
    )
    assert signed_in.status_code == 303
    assert db.execute("SELECT count(*) FROM login_failures").fetchone()[0] == 1

    # Wrong bearer tokens count the same way.
    for _ in range(3):
        wrong = requests.get(f"{base}/batches", headers={"Authorization": "Bearer guess"}, timeout=10)
        assert wrong.status_code == 401
    api = requests.get(f"{base}/batches", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert api.status_code == 429


def test_concurrent_wrong_tokens_get_no_more_answers_than_the_limit(signed_web):
    """Failures are counted before the answer is chosen: 12 guesses at once get at most
    LOGIN_MAX_FAILURES (3) "wrong" answers between them, the rest 429."""
    from concurrent.futures import ThreadPoolExecutor

    def guess(_: int) -> int:
        headers = {"Authorization": "Bearer guess"}
        return requests.get(f"{signed_web.base}/batches", headers=headers, timeout=20).status_code

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(guess, range(12)))
    assert answers.count(401) <= 3 and answers.count(429) >= 9 and set(answers) <= {401, 429}


def test_a_sign_in_body_is_small_whatever_its_form(signed_web):
    """/login stays open to anyone: it reads 16 KiB of body at most, however it is sent."""
    import io

    base = signed_web.base
    big_form = requests.post(f"{base}/login", data={"token": "x" * 200_000, "next": "/"}, timeout=20)
    assert big_form.status_code == 413
    assert big_form.headers["Content-Type"] == "application/problem+json"
    upload_shaped = requests.post(
        f"{base}/login", files={"token": ("t.bin", io.BytesIO(b"x" * 150_000))}, timeout=20
    )
    assert upload_shaped.status_code == 413

    def chunked():
        yield b"token=" + b"x" * 8_000
        for _ in range(5):
            yield b"x" * 8_000

    streamed = requests.post(
        f"{base}/login",
        data=chunked(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=20,
    )
    # A chunked body has no length to refuse up front: werkzeug reads it only up to the limit and
    # parses what it read (here a cut token: 401), never the whole.
    assert streamed.status_code in (401, 413)
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200


def test_a_broken_chunked_sign_in_is_a_400_not_a_500(signed_web):
    from tests.rawhttp import connect, head, read_answer

    with connect(signed_web.port) as sock:
        request = head(
            "POST",
            "/login",
            Content_Type="application/x-www-form-urlencoded",
            Transfer_Encoding="chunked",
        )
        sock.sendall(request + b"zz\r\ntoken=x\r\n0\r\n\r\n")
        answer = read_answer(sock)
    assert answer is not None and answer.status == 400, answer
    assert answer.problem()["type"] == "/problems/truncated-body"
