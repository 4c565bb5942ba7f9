"""Runners on other hosts, and partitions between them and PostgreSQL.

Every process here is real and every connection real TCP: runners run inside
network namespaces of their own (``tests/netns.py``), joined to the test's
namespace by veth pairs, and reach a PostgreSQL that listens on the host ends
of those pairs. A partition takes a namespace's end of its link down: nothing
passes either way and neither side is told (no RST, no FIN), as when a cable
is pulled or a VM's network dies.

What is checked, with the bounds derived from the settings each process gets:

* a batch completes with runners in three namespaces, each connected over TCP
  with keepalives at both ends;
* a runner partitioned mid-round: its chunks are taken over within the
  takeover bound, PostgreSQL's side of its connections is gone within the
  keepalive bound, its late commit after the link returns is refused by the
  lease token, nothing is written twice, and it reconnects and goes on;
* the web app partitioned from PostgreSQL: the API answers 503 with
  Retry-After within a bounded time, no request hangs, and it recovers.

Namespaces need root and the ``ip`` command. With both (as in CI, where
``.ci/run`` runs as root) these tests always run. Without them they are skipped
with the reason, unless ``CI`` is set to anything truthy: there, not being able
to make namespaces is a failure.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest
import requests

from core.connections import KEEPALIVE_COUNT, KEEPALIVE_INTERVAL
from core.embedded_postgres import SUPERUSER, EmbeddedPostgres
from core.migrations import migrate
from tests import netns
from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import RunnerProcesses, WebServer, free_port
from tests.integration.helpers import upload_into

# Settings the processes in this module run with, and the bounds derived from them.
LEASE_SECONDS = 3.0
RELEASE_EXPIRED_SECONDS = 0.5
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 1  # DB_KEEPALIVE_SECONDS: idle time before the first probe
STATEMENT_TIMEOUT = 2.0
DB_POOL_TIMEOUT = 2.0
#: A silent peer's connection is dropped this long after its last packet, at either end.
KEEPALIVE_BOUND = KEEPALIVE_SECONDS + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT
#: Room for a machine busy with other work (2 shared cores): added to every bound, never measured.
SLACK = 15.0
#: TCP_USER_TIMEOUT (ms) the processes here add through DATABASE_URL, at both ends: how long data
#: sent may stay unacknowledged. Keepalives only probe an idle connection; one with data in flight
#: (a statement sent into the partition, or a NOTIFY PostgreSQL sent to a LISTENing runner) is
#: retransmitted for tcp_retries2 instead, about 15 minutes. The service sets its own
#: (tests/unit/test_connections.py); the URLs here set these explicitly, as an operator can.
RUNNER_TCP_USER_TIMEOUT_MS = KEEPALIVE_BOUND * 1000
WEB_TCP_USER_TIMEOUT_MS = int(STATEMENT_TIMEOUT * 1000)


def required() -> bool:
    """Whether these tests must run: CI is set to anything truthy (true, 1, yes...)."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no", "off"}


@dataclass
class World:
    """A PostgreSQL listening on the host ends of the namespaces' links, and the namespaces."""

    cluster: EmbeddedPostgres
    runner_spaces: list[netns.Namespace]
    web_space: netns.Namespace  # links[0] to PostgreSQL, links[1] for the test's HTTP requests

    def url(self, dbname: str, via: netns.Link | None = None, tcp_user_timeout_ms: int = 0) -> str:
        """The database's URL from this namespace (Unix socket), or from a namespace through ``via``,
        with TCP_USER_TIMEOUT at both ends if given (libpq's parameter, and the server's setting
        as an ``options`` of the URL, which the service keeps after its own)."""
        if via is None:
            return self.cluster.url(dbname)
        url = f"postgresql://{SUPERUSER}@{via.host_address}:{self.cluster.port}/{dbname}"
        if tcp_user_timeout_ms:
            timeout = tcp_user_timeout_ms
            url += f"?tcp_user_timeout={timeout}&options=-c%20tcp_user_timeout%3D{timeout}"
        return url


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    reason = netns.unavailable()
    if reason is not None:
        if required():
            pytest.fail(f"CI={os.environ['CI']!r} is set, but the partition tests cannot run: {reason}")
        pytest.skip(f"network partitions need namespaces: {reason}")
    datadir = Path(tempfile.mkdtemp(prefix="sentiment-netns-"))
    with netns.namespaces([1, 1, 1, 2]) as spaces:
        db_links = [space.links[0] for space in spaces]
        cluster = EmbeddedPostgres(
            datadir,
            port=free_port(),
            fast_unsafe=True,
            extra_listen_addresses=tuple(link.host_address for link in db_links),
        )
        cluster.init()
        hba = cluster.datadir / "pgdata" / "pg_hba.conf"
        with hba.open("a") as rules:
            for link in db_links:  # the namespaces' own addresses, nothing wider
                rules.write(f"host all all {link.ns_address}/32 trust\n")
        try:
            cluster.start()
            with psycopg.connect(cluster.url(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE template_netns")
            migrate(cluster.url("template_netns"))
            yield World(cluster, spaces[:3], spaces[3])
        finally:
            cluster.stop("immediate")
            shutil.rmtree(datadir, ignore_errors=True)
    left = set(netns.leftovers()) & {space.name for space in spaces}
    assert not left, f"namespaces left behind: {left}"


@pytest.fixture
def dbname(world: World) -> Iterator[str]:
    """A fresh migrated database for the test, dropped after it."""
    name = f"netns_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(world.cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template_netns")
    yield name
    with psycopg.connect(world.cluster.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


class NamespacedRunners(RunnerProcesses):
    """Runner processes, each inside a namespace; all stopped after the test."""

    defaults: ClassVar[dict[str, str]] = {
        "MIGRATE_ON_START": "false",
        "LEASE_SECONDS": str(LEASE_SECONDS),
        "RELEASE_EXPIRED_SECONDS": str(RELEASE_EXPIRED_SECONDS),
        "POLL_SECONDS": str(POLL_SECONDS),
        "DB_KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS),
        "RUNNER_EXPIRY_SECONDS": "600",
        "LOG_LEVEL": "INFO",
    }
    stop_timeout = 15.0

    def __init__(self, world: World, dbname: str, logdir: Path) -> None:
        super().__init__("", logdir)
        self.world = world
        self.dbname = dbname

    def start(self, space: netns.Namespace, name: str, **env: str) -> subprocess.Popen[bytes]:  # type: ignore[override]
        url = self.world.url(self.dbname, space.links[0], RUNNER_TCP_USER_TIMEOUT_MS)
        return self.launch(space.popen, f"{name}.log", url, {"RUNNER_NAME": name, **env})

    def log(self, name: str) -> str:
        return (self.logdir / f"{name}.log").read_text(errors="replace")


@pytest.fixture
def ns_runners(world: World, dbname: str, tmp_path: Path) -> Iterator[NamespacedRunners]:
    group = NamespacedRunners(world, dbname, tmp_path)
    yield group
    group.stop_all()


@pytest.fixture(autouse=True)
def links_mended(world: World) -> Iterator[None]:
    """Whatever a test cut is up again after it, even when it failed half-way."""
    yield
    for space in [*world.runner_spaces, world.web_space]:
        for link in space.links:
            if not link.is_up():
                link.mend()


def one(conn: psycopg.Connection, sql: str, *params: object) -> object:
    return conn.execute(sql, params).fetchone()[0]


def wait_until_registered(url: str, names: list[str]) -> None:
    """Every runner has connected and registered (a busy machine may take seconds to start one)."""
    with psycopg.connect(url, autocommit=True) as conn:
        query = "SELECT count(*) FROM runners WHERE name = ANY(%s)"
        wait_for(lambda: one(conn, query, names) == len(names), timeout=120, interval=0.2)


def batch_done(conn: psycopg.Connection, public_id: str) -> bool:
    return one(conn, "SELECT status FROM batches WHERE public_id = %s", public_id) == "completed"


def assert_exactly_once(conn: psycopg.Connection, public_id: str, rows: int) -> None:
    """One result per row (the primary key forbids two; the count shows none is missing)."""
    internal, total, processed = conn.execute(
        "SELECT id, total_count, processed_count FROM batches WHERE public_id = %s", (public_id,)
    ).fetchone()
    count, distinct = conn.execute(
        "SELECT count(*), count(DISTINCT row_number) FROM batch_results WHERE batch_id = %s", (internal,)
    ).fetchone()
    assert (total, processed, count, distinct) == (rows, rows, rows, rows)
    # Every input row kept, once, under the row number its result has.
    inputs, matched = conn.execute(
        "SELECT count(*), count(r.row_number) FROM batch_inputs AS i"
        " LEFT JOIN batch_results AS r ON r.batch_id = i.batch_id AND r.row_number = i.row_number"
        " WHERE i.batch_id = %s",
        (internal,),
    ).fetchone()
    assert (inputs, matched) == (rows, rows)


def sessions_from(conn: psycopg.Connection, address: str) -> int:
    """PostgreSQL backends whose client is at ``address`` (the server's side of its connections)."""
    return one(conn, "SELECT count(*) FROM pg_stat_activity WHERE client_addr = %s::inet", address)


def server_sockets(port: int, peer: str) -> str:
    """``ss`` on PostgreSQL's TCP sockets to ``peer``: state, queues and timers."""
    return subprocess.run(
        ["ss", "-tnoiH", "state", "all", f"( sport = :{port} and dst {peer} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def server_keepalive_timers(port: int, peer: str) -> list[str]:
    """The kernel's timers on PostgreSQL's established sockets to ``peer`` (keepalive when idle)."""
    return re.findall(r"timer:\((\w+)", server_sockets(port, peer))


def test_a_batch_completes_with_runners_in_three_namespaces(world, dbname, ns_runners):
    local = world.url(dbname)
    names = [f"ns-runner-{index}" for index in range(3)]
    for space, name in zip(world.runner_spaces, names, strict=True):
        ns_runners.start(space, name, SCORER="tests.scorers:slow", TEST_SCORE_DELAY_SECONDS="0.05")
    wait_until_registered(local, names)
    public_id = upload_into(local, make_csv(sample_texts(6000, seed=18)))["batch_id"]
    with psycopg.connect(local, autocommit=True) as conn:
        wait_for(lambda: batch_done(conn, public_id), timeout=120, interval=0.2)
        assert_exactly_once(conn, public_id, 6000)
        done = dict(conn.execute("SELECT name, chunks_done FROM runners WHERE name = ANY(%s)", (names,)))
        assert sorted(done) == names and all(done[name] > 0 for name in names), done
        for space in world.runner_spaces:
            peer = space.links[0].ns_address
            # Each runner's sessions come over TCP from its namespace's own address ...
            assert sessions_from(conn, peer) >= 1
            # ... and PostgreSQL's sockets to it run keepalive timers (DB_KEEPALIVE_SECONDS).
            assert "keepalive" in server_keepalive_timers(world.cluster.port, peer)


def held_by(conn: psycopg.Connection, name: str) -> dict[int, object]:
    """The chunks a runner holds now, with their lease tokens."""
    return dict(
        conn.execute(
            "SELECT id, claim_token FROM chunks WHERE state = 'claimed' AND claimed_by = %s", (name,)
        )
    )


def test_a_runner_partitioned_mid_round_loses_its_chunks_cleanly_and_comes_back(world, dbname, ns_runners):
    local = world.url(dbname)
    cut_space, *other_spaces = world.runner_spaces
    link = cut_space.links[0]
    # The runner we cut scores slowly (rounds of 2 chunks x 2 s), so it is mid-round nearly all the time;
    # the others quickly (rounds of 2 x 0.2 s), so they look for expired leases often.
    delay = {"cut": 2.0, "other": 0.2}
    claim_chunks = 2
    ns_runners.start(
        cut_space,
        "cut",
        SCORER="tests.scorers:slow",
        TEST_SCORE_DELAY_SECONDS=str(delay["cut"]),
        CLAIM_CHUNKS=str(claim_chunks),
    )
    for index, space in enumerate(other_spaces):
        ns_runners.start(
            space,
            f"other-{index}",
            SCORER="tests.scorers:slow",
            TEST_SCORE_DELAY_SECONDS=str(delay["other"]),
            CLAIM_CHUNKS=str(claim_chunks),
        )
    wait_until_registered(local, ["cut", "other-0", "other-1"])
    rows = 30_000  # 300 chunks: the others need about 30 s, so work is left after the partition starts
    public_id = upload_into(local, make_csv(sample_texts(rows, seed=19)))["batch_id"]
    with psycopg.connect(local, autocommit=True) as conn:
        # Mid-round: the runner holds a round it has just claimed and is scoring it.
        held = wait_for(lambda: held_by(conn, "cut"), timeout=60, interval=0.05)
        before = sessions_from(conn, link.ns_address)
        assert before >= 1
        link.cut()
        # Still its round, with the same tokens: the cut came while it was scoring.
        assert {k: v for k, v in held_by(conn, "cut").items() if k in held} == held

        # Takeover: another runner's housekeeping requeues the chunks once their lease expires
        # (LEASE_SECONDS after the last renewal), on its next turn (RELEASE_EXPIRED_SECONDS, between
        # its rounds of CLAIM_CHUNKS chunks).
        takeover_bound = LEASE_SECONDS + RELEASE_EXPIRED_SECONDS + claim_chunks * delay["other"]
        wait_for(lambda: not (set(held_by(conn, "cut")) & set(held)), timeout=takeover_bound + SLACK)

        # PostgreSQL's side of the dead connections: an idle one dropped by its TCP keepalives
        # (tcp_keepalives_idle = DB_KEEPALIVE_SECONDS, then KEEPALIVE_COUNT probes KEEPALIVE_INTERVAL
        # apart), the LISTENing one, to which the takeover's NOTIFY was sent, by TCP_USER_TIMEOUT
        # (the same bound) after that send.
        try:
            wait_for(
                lambda: sessions_from(conn, link.ns_address) == 0,
                timeout=KEEPALIVE_BOUND + SLACK,
                interval=0.5,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {server_sockets(world.cluster.port, link.ns_address)}") from None
        assert not link.is_up()
        link.mend()

        # The runner's own side learns its connection is gone at its next retransmission (an RST from
        # the server), at most one more partition's length later; it reconnects ...
        wait_for(lambda: sessions_from(conn, link.ns_address) >= 1, timeout=KEEPALIVE_BOUND + 2 * SLACK)

        # ... and tries to commit the round it scored: refused, its leases were taken over.
        def lost() -> set[int]:
            return {
                int(n) for n in re.findall(r"chunk (\d+) of batch \d+: lease lost", ns_runners.log("cut"))
            }

        try:
            wait_for(lambda: set(held) <= lost(), timeout=KEEPALIVE_BOUND + 2 * SLACK)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: held {sorted(held)}, refused {sorted(lost())}") from None

        wait_for(lambda: batch_done(conn, public_id), timeout=180, interval=0.2)
        assert_exactly_once(conn, public_id, rows)

        # It goes on: it commits chunks of the next batch.
        done_before = one(conn, "SELECT chunks_done FROM runners WHERE name = 'cut'")
        second = upload_into(local, make_csv(sample_texts(4000, seed=20)))["batch_id"]
        wait_for(
            lambda: one(conn, "SELECT chunks_done FROM runners WHERE name = 'cut'") > done_before,
            timeout=60,
            interval=0.2,
        )
        wait_for(lambda: batch_done(conn, second), timeout=120, interval=0.2)
        assert_exactly_once(conn, second, 4000)
    assert ns_runners.procs[0].poll() is None  # it never stopped


def namespaced_web(world: World, dbname: str, logdir: Path, **env: str) -> WebServer:
    """gunicorn inside the web namespace: PostgreSQL through its first link, clients through its second."""
    space = world.web_space
    url = world.url(dbname, space.links[0], WEB_TCP_USER_TIMEOUT_MS)
    return WebServer(url, logdir, host=space.links[1].ns_address, popen=space.popen, **env)


def test_the_web_app_partitioned_from_postgresql_answers_503_then_recovers(
    world, dbname, ns_runners, tmp_path
):
    link = world.web_space.links[0]
    web = namespaced_web(
        world,
        dbname,
        tmp_path,
        STATEMENT_TIMEOUT=str(STATEMENT_TIMEOUT),
        DB_POOL_TIMEOUT=str(DB_POOL_TIMEOUT),
        DB_KEEPALIVE_SECONDS=str(KEEPALIVE_SECONDS),
        DB_POOL_SIZE="6",
    )
    try:
        public_id = upload_into(world.url(dbname), make_csv(sample_texts(500, seed=21)))["batch_id"]
        status = f"{web.base}/batch/{public_id}"
        # Every pooled connection is in use once, so the pool holds several open ones to cut.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert {
                r.status_code for r in pool.map(lambda _: requests.get(status, timeout=30), range(24))
            } == {200}
        link.cut()
        # No request hangs: a pooled connection's check (a round trip) fails once what it sent stayed
        # unacknowledged for TCP_USER_TIMEOUT (here STATEMENT_TIMEOUT), and the pool's wait for another
        # one (DB_POOL_TIMEOUT) has passed by then: 503 with Retry-After.
        answer_bound = WEB_TCP_USER_TIMEOUT_MS / 1000 + DB_POOL_TIMEOUT + SLACK

        def during(_: int) -> tuple[int, str | None, str]:
            answer = requests.get(status, timeout=answer_bound)
            return answer.status_code, answer.headers.get("Retry-After"), answer.json().get("type", "")

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(during, range(8)))
        assert {code for code, _, _ in answers} == {503}, answers
        assert all(retry_after and int(retry_after) > 0 for _, retry_after, _ in answers), answers
        assert all(kind.endswith("database-unavailable") for _, _, kind in answers), answers
        link.mend()
        # It recovers: dead connections are noticed and replaced.
        wait_for(
            lambda: requests.get(status, timeout=answer_bound).status_code == 200,
            timeout=KEEPALIVE_BOUND + SLACK,
            interval=0.5,
        )
    finally:
        web.stop()
