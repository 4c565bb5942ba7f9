"""Wrong keys, proxies and sessions against a real gunicorn: failures are counted per address and
credential family and never forgiven by a success, a valid client key always gets in, IPv6 clients
count by /64, forwarded headers are trusted from FORWARDED_ALLOW_IPS only, a short API_TOKEN stops
the process, sign-in rotates sessions and caps them per key, and signed-in answers are not cached."""

from __future__ import annotations

import subprocess

import pytest
import requests

from core import clients
from tests.helpers import make_csv
from tests.integration.conftest import REPO, free_port
from tests.integration.helpers import bearer, score_everything
from webapp import gunicorn_command

TOKEN = "an admin token of well over thirty-two characters"
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def _login(base: str, token: str, **kwargs) -> requests.Response:
    session = kwargs.pop("session", None) or requests
    return session.post(
        f"{base}/login", data={"token": token, "next": "/"}, allow_redirects=False, timeout=10, **kwargs
    )


def _failures(db) -> dict[str, int]:
    """Failures per counted address, over every credential family."""
    rows = db.execute("SELECT client_address, sum(failures)::int FROM login_failures GROUP BY 1").fetchall()
    return dict(rows)


def _families(db) -> set[tuple[str, str]]:
    return set(db.execute("SELECT client_address, family FROM login_failures").fetchall())


def test_a_right_sign_in_does_not_forgive_the_wrong_ones(serve, db):
    """A key holder cannot alternate guesses at API_TOKEN with sign-ins of its own key."""
    web = serve(API_TOKEN=TOKEN, LOGIN_MAX_FAILURES="3")
    own = clients.create_key(db, "alice")
    answers = []
    for _ in range(3):
        answers.append(_login(web.base, "guess one").status_code)
        answers.append(_login(web.base, own).status_code)
        answers.append(_login(web.base, TOKEN).status_code)
    # Three guesses, each followed by right sign-ins: the fourth guess is past the limit.
    assert answers.count(401) == 3, answers
    assert _login(web.base, "guess two").status_code == 429
    bearer_guess = requests.get(f"{web.base}/batches", headers=bearer("guess three"), timeout=10)
    assert bearer_guess.status_code == 429
    assert bearer_guess.headers["Content-Type"] == "application/problem+json"
    assert _failures(db)["127.0.0.1"] == 3 and _families(db) == {("127.0.0.1", "api_token")}


def test_a_valid_client_key_is_never_refused_for_its_address_failures(serve, db):
    web = serve(API_TOKEN=TOKEN, LOGIN_MAX_FAILURES="3")
    alice = clients.create_key(db, "alice")
    for _ in range(5):  # anyone at this address, without a key
        guess = requests.get(f"{web.base}/batches", headers=bearer("x"), timeout=10)
    assert guess.status_code == 429
    assert requests.get(f"{web.base}/batches", headers=bearer(alice), timeout=10).status_code == 200
    # Made-up client keys count in their own family: past the limit they get 429 too.
    for _ in range(5):
        made_up = requests.get(f"{web.base}/batches", headers=bearer(clients.new_key()), timeout=10)
    assert made_up.status_code == 429
    # Both families are past the limit at this address, and alice's key still gets in.
    assert requests.get(f"{web.base}/batches", headers=bearer(alice), timeout=10).status_code == 200
    assert _login(web.base, alice).status_code == 303
    # Guesses at API_TOKEN from this address are refused unchecked, the right one too, so a guesser
    # learns nothing; from another address it signs in.
    assert requests.get(f"{web.base}/batches", headers=bearer(TOKEN), timeout=10).status_code == 429
    assert _families(db) == {("127.0.0.1", "api_token"), ("127.0.0.1", "client_key")}


def test_forwarded_headers_are_trusted_from_the_allowed_proxies_only(serve, db):
    forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    behind_proxy = serve(API_TOKEN=TOKEN, FORWARDED_ALLOW_IPS="127.0.0.1,10.0.0.0/8")
    signed_in = _login(behind_proxy.base, TOKEN, headers=forwarded)
    assert signed_in.status_code == 303
    assert "Secure" in signed_in.headers["Set-Cookie"]
    assert _login(behind_proxy.base, "guess", headers=forwarded).status_code == 401
    assert _failures(db) == {"198.51.100.7": 1}

    db.execute("DELETE FROM login_failures")
    for allowed in (None, "10.0.0.1"):  # no proxy trusted, or one at another address
        direct = serve(API_TOKEN=TOKEN, **({"FORWARDED_ALLOW_IPS": allowed} if allowed else {}))
        signed_in = _login(direct.base, TOKEN, headers=forwarded)
        assert signed_in.status_code == 303
        assert "Secure" not in signed_in.headers["Set-Cookie"], allowed
        assert _login(direct.base, "guess", headers=forwarded).status_code == 401
    assert _failures(db) == {"127.0.0.1": 2}


def test_ipv6_clients_are_counted_by_their_64(serve, db):
    web = serve(API_TOKEN=TOKEN, LOGIN_MAX_FAILURES="3", FORWARDED_ALLOW_IPS="127.0.0.1")
    for host in range(1, 5):  # four addresses of one /64
        answer = _login(web.base, "guess", headers={"X-Forwarded-For": f"2001:db8:0:1::{host}"})
    assert answer.status_code == 429
    assert _failures(db) == {"2001:db8:0:1::/64": 3}
    # Another /64, and an IPv4 client written as IPv6, are counted apart.
    other = _login(web.base, "guess", headers={"X-Forwarded-For": "2001:db8:0:2::1"})
    mapped = _login(web.base, "guess", headers={"X-Forwarded-For": "::ffff:192.0.2.1"})
    assert other.status_code == mapped.status_code == 401
    assert _failures(db)["192.0.2.1"] == 1


@pytest.mark.parametrize("command", ["web", "runner"])
def test_a_short_api_token_stops_the_process_at_start(database_url, tmp_path, command):
    import os
    import sys

    env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(REPO), API_TOKEN="x" * 31)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    argv = (
        gunicorn_command(f"127.0.0.1:{free_port()}")
        if command == "web"
        else [sys.executable, "-m", "jobrunner"]
    )
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "API_TOKEN" in done.stderr and "32 characters" in done.stderr, done.stderr[-2000:]
    assert "x" * 31 not in done.stderr  # the message never shows the token


def test_signing_in_again_ends_the_old_session_and_sessions_are_capped_per_key(serve, db):
    web = serve(API_TOKEN=TOKEN, SESSIONS_PER_KEY="2")
    alice = clients.create_key(db, "alice")
    browser = requests.Session()
    browser.headers.update(HTML)
    assert _login(web.base, alice, session=browser).status_code == 303
    first = browser.cookies["sentiment_session"]
    assert _login(web.base, alice, session=browser).status_code == 303
    second = browser.cookies["sentiment_session"]
    assert second != first

    def works(session_id: str) -> bool:
        answer = requests.get(f"{web.base}/batches", cookies={"sentiment_session": session_id}, timeout=10)
        assert answer.status_code in (200, 401)
        return answer.status_code == 200

    assert not works(first) and works(second)
    # Two more browsers with alice's key: past two sessions, the oldest goes.
    third = _login(web.base, alice).cookies["sentiment_session"]
    fourth = _login(web.base, alice).cookies["sentiment_session"]
    assert [works(s) for s in (second, third, fourth)] == [False, True, True]
    # Other keys' sessions are counted apart.
    token_session = _login(web.base, TOKEN).cookies["sentiment_session"]
    assert works(token_session) and works(fourth)
    counts = db.execute("SELECT signed_in_as, count(*) FROM web_sessions GROUP BY 1 ORDER BY 1").fetchall()
    assert counts == [("API_TOKEN", 1), ("alice", 2)]


def test_signed_in_answers_are_never_stored_by_a_cache(serve, db):
    web = serve(API_TOKEN=TOKEN)
    key = clients.create_key(db, "alice")
    batch_id = requests.post(
        f"{web.base}/batch/upload",
        files={"file": ("x.csv", make_csv(["good"]))},
        headers=bearer(key),
        timeout=30,
    ).json()["batch_id"]
    score_everything(db)
    cookie = {"sentiment_session": _login(web.base, key).cookies["sentiment_session"]}
    paths = [
        "/batches",
        f"/batch/{batch_id}",
        f"/batch/{batch_id}/results",
        f"/batch/{batch_id}/results.csv",
        f"/batch/{batch_id}/results.ndjson",
        f"/batch/{batch_id}/errors",
        "/batch/batch-00000000000000000000000000000000",
        "/openapi.json",
    ]
    for path in paths:
        for how in ({"headers": bearer(key)}, {"cookies": cookie}, {"cookies": cookie, "headers": HTML}):
            answer = requests.get(f"{web.base}{path}", timeout=30, **how)
            assert answer.status_code in (200, 404), (path, answer.status_code)
            assert answer.headers.get("Cache-Control") == "no-store", (path, how, answer.headers)
    page = requests.get(f"{web.base}/", cookies=cookie, headers=HTML, timeout=10)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    refused = requests.get(f"{web.base}/batches", headers=bearer("wrong"), timeout=10)
    assert refused.status_code == 401 and refused.headers["Cache-Control"] == "no-store"
    # The static files need no key: shared caches may keep them.
    static = requests.get(f"{web.base}/static/style.css", timeout=10)
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")


def test_racing_sign_ins_of_one_key_keep_to_sessions_per_key(database_url, db):
    """Each sign-in trims the key's sessions to the cap; two at once must not each trim from a
    snapshot without the other's session."""
    import threading

    import psycopg

    from tests.helpers import wait_for
    from webapp.auth import sessions

    def sign_in(conn: psycopg.Connection) -> None:
        sessions.start(conn, signed_in_as="alice", credential="k", lifetime_seconds=3600, per_credential=2)

    with psycopg.connect(database_url, autocommit=True) as seed:
        sign_in(seed)
        sign_in(seed)
    with psycopg.connect(database_url, autocommit=True) as first, psycopg.connect(database_url) as second:
        first.execute("BEGIN")  # a sign-in whose commit is slow
        sign_in(first)
        racing = threading.Thread(target=sign_in, args=(second,))
        racing.start()
        waiting = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s"
        wait_for(lambda: db.execute(waiting, (second.info.backend_pid,)).fetchone()[0])
        first.execute("COMMIT")
        racing.join(30)
        second.commit()
    count = "SELECT count(*) FROM web_sessions WHERE credential_hash = %s"
    assert db.execute(count, (sessions.digest("k"),)).fetchone()[0] == 2
