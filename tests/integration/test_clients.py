"""API keys and ownership: every endpoint against (own key, another key, admin, no key, revoked
key), the admin's client filter, the key commands, and usage per key."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from itsdangerous import URLSafeSerializer

from core import clients
from tests.helpers import make_csv
from tests.integration.conftest import REPO
from tests.integration.helpers import bearer, post_file, score_everything

HTML = {"Accept": "text/html"}


@pytest.fixture
def keys(db):
    """alice and bob (clients), root (admin), gone (revoked): name -> key."""
    made = {
        name: clients.create_key(db, name, admin=name == "root") for name in ("alice", "bob", "root", "gone")
    }
    clients.revoke_key(db, "gone")
    return made


def csv_of(rows: int = 30) -> bytes:
    """``rows`` rows, the last one empty and so set aside, so /errors has something."""
    return make_csv(["good"] * (rows - 1) + [""])


@pytest.fixture
def alice_batches(client, db, keys):
    """Three batches of alice's: one completed, two still processing."""
    done = post_file(client, csv_of(), key=keys["alice"]).get_json()["batch_id"]
    score_everything(db)
    waiting = [post_file(client, csv_of(), key=keys["alice"]).get_json()["batch_id"] for _ in range(2)]
    return done, waiting


# Who asks, and what a read of alice's batch gets.
CALLERS = {"own": "alice", "another": "bob", "admin": "root", "none": None, "revoked": "gone"}
READ_STATUS = {"own": 200, "another": 404, "admin": 200, "none": 401, "revoked": 401}
READS = [
    "/batch/{id}",
    "/batch/{id}/results",
    "/batch/{id}/errors",
    "/batch/{id}/results.csv",
    "/batch/{id}/results.ndjson",
    "/batch/{id}/webhooks",
]


@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize("path", READS)
def test_reads_of_a_batch(client, keys, alice_batches, who, path):
    done, _ = alice_batches
    key = keys[CALLERS[who]] if CALLERS[who] else None
    response = client.get(path.format(id=done), headers=bearer(key))
    assert response.status_code == READ_STATUS[who], response.get_data(as_text=True)[:300]
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("path", READS)
def test_another_clients_batch_is_answered_exactly_as_one_that_never_existed(
    client, keys, alice_batches, path
):
    done, _ = alice_batches
    never = "batch-" + "0" * 32
    theirs = client.get(path.format(id=done), headers=bearer(keys["bob"]))
    nobodys = client.get(path.format(id=never), headers=bearer(keys["bob"]))
    assert theirs.status_code == nobodys.status_code == 404
    assert theirs.get_data(as_text=True).replace(done, never) == nobodys.get_data(as_text=True)
    assert dict(theirs.headers) == dict(nobodys.headers)


@pytest.mark.parametrize("who", CALLERS)
def test_the_batch_page(client, keys, alice_batches, who):
    done, _ = alice_batches
    key = keys[CALLERS[who]] if CALLERS[who] else None
    response = client.get(f"/batch/{done}", headers={**HTML, **bearer(key)})
    expected = {"own": 200, "another": 404, "admin": 200, "none": 303, "revoked": 401}[who]
    assert response.status_code == expected
    if who == "none":
        assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("who", CALLERS)
def test_cancel_and_delete(client, db, keys, alice_batches, who):
    done, (processing, _) = alice_batches
    key = keys[CALLERS[who]] if CALLERS[who] else None
    cancelled = client.post(f"/batch/{processing}/cancel", headers=bearer(key))
    deleted = client.delete(f"/batch/{done}", headers=bearer(key))
    allowed = who in ("own", "admin")
    assert cancelled.status_code == (200 if allowed else READ_STATUS[who])
    assert deleted.status_code == (204 if allowed else READ_STATUS[who])
    statuses = dict(db.execute("SELECT public_id, status FROM batches WHERE deleted_at IS NULL").fetchall())
    assert (statuses.get(processing) == "cancelled") is allowed
    assert (done not in statuses) is allowed


def _listed(client, key, query=""):  # type: ignore[no-untyped-def]
    response = client.get(f"/batches{query}", headers=bearer(key))
    return response.status_code, {b["batch_id"] for b in response.get_json().get("batches", [])}


def test_lists_show_the_callers_own_batches_and_everything_to_an_admin(client, db, keys, alice_batches):
    done, waiting = alice_batches
    bobs = post_file(client, csv_of(), key=keys["bob"]).get_json()["batch_id"]
    alices = {done, *waiting}
    assert _listed(client, keys["alice"]) == (200, alices)
    assert _listed(client, keys["bob"]) == (200, {bobs})
    assert _listed(client, keys["root"]) == (200, alices | {bobs})
    assert _listed(client, keys["root"], "?client=bob") == (200, {bobs})
    assert _listed(client, keys["alice"], "?client=alice") == (200, alices)
    forbidden = client.get("/batches?client=bob", headers=bearer(keys["alice"]))
    assert forbidden.status_code == 403 and forbidden.mimetype == "application/problem+json"
    assert client.get("/batches?client=no%20such!", headers=bearer(keys["root"])).status_code == 400
    assert client.get("/batches").status_code == 401
    assert client.get("/batches", headers=bearer(keys["gone"])).status_code == 401
    # Every batch object names its owner.
    batch = client.get(f"/batch/{bobs}", headers=bearer(keys["root"])).get_json()
    assert batch["client"] == "bob"
    # The home page lists the caller's batches only, and names the caller.
    page = client.get("/", headers={**HTML, **bearer(keys["bob"])}).get_data(as_text=True)
    assert bobs in page and not any(b in page for b in alices)
    assert "Signed in as <strong>bob</strong>" in page


@pytest.mark.parametrize("who", CALLERS)
def test_upload(client, db, keys, who):
    key = keys[CALLERS[who]] if CALLERS[who] else None
    response = post_file(client, csv_of(), key=key)
    expected = {"own": 202, "another": 202, "admin": 202, "none": 401, "revoked": 401}[who]
    assert response.status_code == expected
    owners = [row[0] for row in db.execute("SELECT client FROM batches")]
    assert owners == ([CALLERS[who]] if expected == 202 else [])


@pytest.mark.parametrize("who", CALLERS)
def test_service_wide_endpoints(client, keys, who):
    key = keys[CALLERS[who]] if CALLERS[who] else None
    signed_in = {"own": 200, "another": 200, "admin": 200, "none": 401, "revoked": 401}[who]
    assert client.get("/metrics", headers=bearer(key)).status_code == (
        403 if who in ("own", "another") else signed_in
    )
    assert client.get("/openapi.json", headers=bearer(key)).status_code == signed_in
    # Open to all, key or not.
    assert client.get("/healthz", headers=bearer(key)).status_code == 200
    assert client.get("/readyz", headers=bearer(key)).status_code == 200
    assert client.get("/login", headers=HTML).status_code == 200


def test_without_keys_the_service_is_one_users_local_tool(client, db):
    response = post_file(client, csv_of())
    assert response.status_code == 202
    batch_id = response.get_json()["batch_id"]
    assert client.get(f"/batch/{batch_id}").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/login", headers=HTML).status_code == 303
    # A credential sent to a service with no keys is ignored: it is open to everyone.
    assert client.get(f"/batch/{batch_id}", headers=bearer("an old token")).status_code == 200
    # The first key closes it, at once; revoking every key does not open it again.
    clients.create_key(db, "first")
    assert client.get(f"/batch/{batch_id}").status_code == 401
    assert client.get(f"/batch/{batch_id}", headers=bearer("an old token")).status_code == 401
    clients.revoke_key(db, "first")
    assert client.get(f"/batch/{batch_id}").status_code == 401


#: An API_TOKEN of the 32 characters it needs at least.
ADMIN_TOKEN = "t0ken-" + "x" * 26


def test_api_token_is_an_admin_key(database_url, db, keys):
    from webapp import create_app

    app = create_app({"database_url": database_url, "migrate_on_start": False, "api_token": ADMIN_TOKEN})
    try:
        with app.test_client() as web:
            mine = post_file(web, csv_of(), key=keys["alice"]).get_json()["batch_id"]
            assert web.get(f"/batch/{mine}", headers=bearer(ADMIN_TOKEN)).status_code == 200
            assert web.get("/metrics", headers=bearer(ADMIN_TOKEN)).status_code == 200
            unowned = post_file(web, csv_of(), key=ADMIN_TOKEN).get_json()
            assert unowned["client"] is None
            assert web.get(f"/batch/{unowned['batch_id']}", headers=bearer(keys["alice"])).status_code == 404
    finally:
        app.extensions["db_pool"].close()


def _keys_command(database_url: str, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(REPO), **settings)
    return subprocess.run(
        [sys.executable, "-m", "jobrunner", "keys", *args], env=env, cwd=REPO, capture_output=True, text=True
    )


def test_a_new_webhook_secret_leaves_the_old_one_signing_for_the_overlap(database_url, db):
    made = _keys_command(database_url, "create", "team-a")
    first = made.stdout.splitlines()[0].split()[-1]
    assert first.startswith("whsec_")
    rotated = _keys_command(database_url, "webhook-secret", "team-a")
    assert rotated.returncode == 0, rotated.stderr
    second = rotated.stdout.strip().splitlines()[-1]
    assert second.startswith("whsec_") and second != first and "signs beside it until" in rotated.stdout
    stored = db.execute(
        "SELECT secret, previous_secret, previous_until - now() > interval '23 hours' FROM webhook_secrets"
    ).fetchone()
    assert stored == (second, first, True)
    at_once = _keys_command(database_url, "webhook-secret", "team-a", WEBHOOK_SECRET_OVERLAP="off")
    assert at_once.returncode == 0 and "signs beside it" not in at_once.stdout
    assert _keys_command(database_url, "webhook-secret", "nobody").returncode == 1


def test_key_commands(database_url, client, db):
    made = _keys_command(database_url, "create", "team-a")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith(clients.KEY_PREFIX) and len(key) >= len(clients.KEY_PREFIX) + 43  # 256 bits
    stored = db.execute("SELECT key_hash, role FROM api_keys WHERE name = 'team-a'").fetchone()
    assert stored == (clients.key_hash(key), "client")
    admin = _keys_command(database_url, "create", "ops", "--admin")
    assert admin.returncode == 0 and db.execute(
        "SELECT role FROM api_keys WHERE name = 'ops'"
    ).fetchone() == ("admin",)
    assert _keys_command(database_url, "create", "team-a").returncode == 1  # a name is never reused
    assert _keys_command(database_url, "create", "bad name").returncode == 1

    assert post_file(client, csv_of(), key=key).status_code == 202
    listing = _keys_command(database_url, "list")
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "ROLE"]
    team = next(line for line in lines if line.startswith("team-a"))
    assert "client" in team and key not in listing.stdout
    assert team.split()[-1] == "-"  # not revoked
    assert db.execute("SELECT last_used_at IS NOT NULL FROM api_keys WHERE name = 'team-a'").fetchone() == (
        True,
    )

    revoked = _keys_command(database_url, "revoke", "team-a")
    assert revoked.returncode == 0
    answer = client.get("/batches", headers=bearer(key))
    assert answer.status_code == 401 and "revoked" in answer.get_json()["detail"]
    assert _keys_command(database_url, "revoke", "team-a").returncode == 1
    assert _keys_command(database_url, "revoke", "nobody").returncode == 1


def test_usage_per_key_in_metrics_and_client_usage(client, db, keys):
    first = post_file(client, csv_of(40), key=keys["alice"]).get_json()["batch_id"]
    score_everything(db)
    post_file(client, csv_of(25), key=keys["alice"])
    post_file(client, csv_of(10), key=keys["bob"])
    usage = {
        row[0]: row[1:]
        for row in db.execute("SELECT client, rows_uploaded, rows_scored, rows_queued FROM client_usage")
    }
    # alice: 40 + 25 rows uploaded, 39 scored (one set aside), 24 waiting; bob 10 uploaded, 9 waiting.
    assert usage["alice"] == (65, 39, 24)
    assert usage["bob"] == (10, 0, 9)
    metrics = client.get("/metrics", headers=bearer(keys["root"])).get_data(as_text=True)
    assert 'sentiment_client_rows_uploaded_total{client="alice"} 65.0' in metrics
    assert 'sentiment_client_rows_scored_total{client="alice"} 39.0' in metrics
    assert 'sentiment_client_rows_queued{client="bob"} 9.0' in metrics
    # A batch removed for good stays in its key's usage.
    assert client.delete(f"/batch/{first}", headers=bearer(keys["alice"])).status_code == 204
    from core import batches

    batches.reap(db, budget_seconds=float("inf"))
    assert db.execute("SELECT count(*) FROM batches WHERE public_id = %s", (first,)).fetchone() == (0,)
    after = db.execute(
        "SELECT rows_uploaded, rows_scored FROM client_usage WHERE client = 'alice'"
    ).fetchone()
    assert after == (65, 39)


def test_the_start_warning_when_listening_beyond_loopback_without_keys(database_url, db):
    warn = clients.open_to_the_network_warning
    assert warn(database_url, "", [("127.0.0.1", 8000), ("::1", 8000)]) is None
    message = warn(database_url, "", [("0.0.0.0", 8000)])
    assert message and "no API key" in message and "0.0.0.0:8000" in message
    assert warn(database_url, "token", [("0.0.0.0", 8000)]) is None
    clients.create_key(db, "someone")
    assert warn(database_url, "", [("0.0.0.0", 8000)]) is None
    # A database it cannot reach is no reason to stop the start, nor to warn wrongly.
    assert warn("postgresql://nobody@127.0.0.1:1/x", "", [("0.0.0.0", 8000)]) is None


def test_a_key_is_never_stored(db):
    key = clients.create_key(db, "k")
    dump = db.execute("SELECT row_to_json(k)::text FROM api_keys k").fetchone()[0]
    assert key not in dump and key.removeprefix(clients.KEY_PREFIX) not in dump
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO api_keys (name, key_hash) VALUES ('short', 'x')")


def test_a_browser_signs_in_with_a_key_and_sees_its_own_batches_only(serve, db):
    import requests

    server = serve()
    keys = {name: clients.create_key(db, name) for name in ("alice", "bob")}
    owned = {}
    for name, key in keys.items():
        answer = requests.post(
            f"{server.base}/batch/upload", files={"file": ("x.csv", make_csv(["fine"]))}, headers=bearer(key)
        )
        owned[name] = answer.json()["batch_id"]
    browser = requests.Session()
    browser.headers.update({"Accept": "text/html", "Origin": server.base})
    assert browser.get(f"{server.base}/").url.startswith(f"{server.base}/login")
    signed = browser.post(f"{server.base}/login", data={"token": keys["alice"], "next": "/"})
    assert signed.status_code == 200 and signed.url == f"{server.base}/"
    cookie = browser.cookies.get("sentiment_session")
    assert cookie and keys["alice"] not in cookie
    assert db.execute("SELECT signed_in_as FROM web_sessions").fetchall() == [("alice",)]
    home = signed.text
    assert "Signed in as <strong>alice</strong>" in home
    assert owned["alice"] in home and owned["bob"] not in home
    assert browser.get(f"{server.base}/batch/{owned['bob']}").status_code == 404
    assert browser.get(f"{server.base}/batch/{owned['alice']}").status_code == 200
    # Revoking the key ends its sessions on their next request.
    clients.revoke_key(db, "alice")
    assert browser.get(f"{server.base}/batch/{owned['alice']}").url.startswith(f"{server.base}/login")
    wrong = browser.post(f"{server.base}/login", data={"token": keys["alice"], "next": "/"})
    assert wrong.status_code == 401 and "revoked" in wrong.text
    # Signing in as bob, then out: the row goes and the cookie signs no one in.
    assert browser.post(f"{server.base}/login", data={"token": keys["bob"], "next": "/"}).status_code == 200
    assert browser.post(f"{server.base}/logout").url.startswith(f"{server.base}/login")
    assert db.execute("SELECT count(*) FROM web_sessions WHERE signed_in_as = 'bob'").fetchone() == (0,)


def test_a_revoked_key_in_a_retry_loop_does_not_lock_other_clients_out(database_url, db, keys):
    from webapp import create_app

    app = create_app({"database_url": database_url, "migrate_on_start": False, "login_max_failures": 2})
    try:
        with app.test_client() as web:
            for _ in range(5):  # the same address (behind one proxy, say) as everyone else
                assert web.get("/batches", headers=bearer(keys["gone"])).status_code == 401
                assert web.get("/batches", headers=bearer(clients.new_key())).status_code in (401, 429)
            assert web.get("/batches", headers=bearer(keys["alice"])).status_code == 200
            # Guesses of API_TOKEN (anything not shaped like our keys) count in their own family,
            # and lock out only that family at this address.
            for _ in range(3):
                assert web.get("/batches", headers=bearer("password1")).status_code in (401, 429)
            assert web.get("/batches", headers=bearer("password1")).status_code == 429
            assert web.get("/batches", headers=bearer(keys["alice"])).status_code == 200
    finally:
        app.extensions["db_pool"].close()


@pytest.mark.parametrize("name", ["API_TOKEN", "local"])
def test_names_that_mean_something_else_are_reserved(db, name):
    with pytest.raises(clients.InvalidInput):
        clients.create_key(db, name)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO api_keys (name, key_hash) VALUES (%s, %s)", (name, b"x" * 32))


def test_a_browser_upload_refused_by_the_quota_gets_the_form_again(database_url, db):
    from webapp import create_app

    app = create_app({"database_url": database_url, "migrate_on_start": False, "quota_queued_rows": 10})
    key = clients.create_key(db, "small")
    try:
        with app.test_client() as web:
            headers = {**HTML, **bearer(key), "Origin": "http://localhost"}
            answer = post_file(web, csv_of(), headers=headers)
            assert answer.status_code == 429
            page = answer.get_data(as_text=True)
            assert 'type="file"' in page and "quota" in page.lower()
    finally:
        app.extensions["db_pool"].close()


def test_the_batch_list_cursor_shows_nothing_of_other_clients(client, db, keys):
    # A cursor is signed, not encrypted: anyone can read it. It names the caller's own batch (its
    # time and public id), never the id sequence every client's uploads advance.
    alices = [post_file(client, csv_of(), key=keys["alice"]).get_json()["batch_id"]]
    for _ in range(3):
        post_file(client, csv_of(), key=keys["bob"])
    alices.append(post_file(client, csv_of(), key=keys["alice"]).get_json()["batch_id"])
    first = client.get("/batches?per_page=1", headers=bearer(keys["alice"]))
    link = first.headers["Link"]
    token = parse_qs(urlsplit(link[1 : link.index(">")]).query)["after"][0]
    _, (_, _, position) = URLSafeSerializer("unknown").loads_unsafe(token)
    created_at, public_id = position  # [time, public id]: what the caller already knows
    assert public_id == alices[1] and isinstance(created_at, str)  # no integer anywhere
    second = client.get(link[1 : link.index(">")], headers=bearer(keys["alice"])).get_json()
    assert [b["batch_id"] for b in second["batches"]] == [alices[0]]
