"""A follower without a database: event ids, what each step sends, when the stream ends, and the
chunks kept for every follower of a batch (webapp.feed.recent)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.batches import Batch, Result
from core.batches.feed import CommittedChunk, FollowState, Position
from core.errors import InvalidInput
from webapp.feed.encoding import Identity
from webapp.feed.follower import STEP_CHUNKS, Follower
from webapp.feed.framing import JsonLines, ServerSentEvents
from webapp.feed.recent import KEEP_BYTES, Recent

BATCH = Batch(
    id=7,
    public_id="batch-" + "0" * 32,
    status="processing",
    total_count=3_000,
    processed_count=0,
    positive_count=0,
    negative_count=0,
    neutral_count=0,
    chunk_size=100,
    source_filename="x.csv",
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
    started_at=None,
    completed_at=None,
    invalid_count=0,
    failed_count=0,
    deleted_at=None,
    client=None,
    metadata={},
    expires_after=None,
    callback_url=None,
    commit_seq=0,
    field_names=[],
)


def _row(number: int) -> Result:
    return Result(number, number + 1, f"r{number}", "text", "neutral", 0.0, 0.0, 0.0, 1.0, 0.0, None)


def _chunk(position: Position, first: int, last: int) -> CommittedChunk:
    """A chunk as the database reads it: its rows' page items, joined by commas."""
    items = [json.dumps(_row(n).to_json(), separators=(",", ":")) for n in range(first, last + 1)]
    return CommittedChunk(position, len(items), ",".join(items).encode())


class Log:
    """A commit log in memory: entry n holds chunks of 100 rows; reads count themselves."""

    def __init__(self) -> None:
        self.entries: list[list[tuple[int, int]]] = []
        self.reads = 0

    def commit(self, *firsts: int) -> Batch:
        self.entries.append([(first, first + 99) for first in sorted(firsts)])
        done = sum(len(entry) for entry in self.entries) * 100
        return replace(BATCH, commit_seq=len(self.entries), processed_count=done, neutral_count=done)

    def read(self, batch: Batch, after: Position, chunks: int) -> list[CommittedChunk]:
        self.reads += 1
        found = [
            _chunk(Position(seq, k), first, last)
            for seq, entry in enumerate(self.entries[: batch.commit_seq], 1)
            for k, (first, last) in enumerate(entry, 1)
            if Position(seq, k) > after
        ]
        return found[:chunks]


def _step(follower: Follower, state: FollowState | None, read) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join(map(Identity().encode, follower.step(state, read)))


def _rows(sent: bytes) -> list[int]:
    return [int(number) for number in re.findall(rb'"row":(\d+)', sent)]


@pytest.mark.parametrize("text", ["0.0", "12.3", " 4.5 ", "2147483647.1"])
def test_an_event_id_reads_back_as_the_position_it_names(text):
    position = Position.parse(text)
    assert str(position) == text.strip() and Position.parse(str(position)) == position


@pytest.mark.parametrize("text", ["abc", "1", "1.", ".1", "1.2.3", "-1.2", "01.2", "2147483648.0", "1.2x"])
def test_an_event_id_the_service_never_sends_is_refused(text):
    with pytest.raises(InvalidInput) as refused:
        Position.parse(text)
    assert refused.value.slug == "invalid-event-id"


def test_positions_order_by_entry_then_chunk():
    assert Position(1, 9) < Position(2, 1) < Position(2, 2) and Position() == Position.parse(None)


def test_each_committed_row_is_sent_once_and_the_end_only_after_the_last():
    log, follower = Log(), Follower(BATCH.id, ServerSentEvents(), None)  # type: ignore[arg-type]
    sent = _step(follower, FollowState(BATCH, in_hand=False), log.read)
    assert sent.startswith(b"event: progress") and log.reads == 0  # nothing committed, nothing read
    batch = log.commit(201, 1)
    sent += _step(follower, FollowState(batch, in_hand=False), log.read)
    batch = log.commit(101)
    sent += _step(follower, FollowState(batch, in_hand=False), log.read)
    reads = log.reads
    sent += _step(follower, FollowState(batch, in_hand=False), log.read)  # nothing new: no read
    assert log.reads == reads and b"event: end" not in sent
    final = replace(batch, status="completed", completed_at=datetime(2026, 1, 2, tzinfo=UTC))
    sent += _step(follower, FollowState(final, in_hand=False), log.read)
    assert _rows(sent) == [*range(1, 101), *range(201, 301), *range(101, 201)]
    assert sent.endswith(b"\n\n") and b"event: end" in sent.split(b"event: rows")[-1] and follower.ended
    assert [line for line in sent.split(b"\n") if line.startswith(b"id:")] == [
        b"id: 1.1",
        b"id: 1.2",
        b"id: 2.1",
    ]


def test_a_cancelled_batch_with_chunks_in_hand_is_not_over_yet():
    log, follower = Log(), Follower(BATCH.id, JsonLines(), None)  # type: ignore[arg-type]
    cancelled = replace(log.commit(1), status="cancelled", completed_at=datetime(2026, 1, 2, tzinfo=UTC))
    _step(follower, FollowState(cancelled, in_hand=True), log.read)
    assert not follower.ended
    late = replace(log.commit(101), status="cancelled", completed_at=cancelled.completed_at)
    sent = _step(follower, FollowState(late, in_hand=False), log.read)
    assert b'"id":"r101"' in sent and follower.ended


def test_a_follower_far_behind_reads_a_step_at_a_time_and_resumes_where_it_was():
    log = Log()
    for first in range(1, 3_001, 100):
        batch = log.commit(first)
    done = replace(batch, status="completed", completed_at=datetime(2026, 1, 2, tzinfo=UTC))
    follower = Follower(BATCH.id, ServerSentEvents(), None, Position(3, 1))  # type: ignore[arg-type]
    first = _step(follower, FollowState(done, in_hand=False), log.read)
    assert follower.behind and not follower.ended and len(_rows(first)) == STEP_CHUNKS * 100
    rest = _step(follower, FollowState(done, in_hand=False), log.read)
    assert _rows(first + rest) == list(range(301, 3_001)) and follower.ended


def test_a_deleted_batch_ends_the_stream_without_an_end_event():
    follower = Follower(BATCH.id, ServerSentEvents(), None)  # type: ignore[arg-type]
    assert _step(follower, None, Log().read) == b"" and follower.ended


class Kept:
    """A commit log of one chunk an entry, sizes chosen, read through a Recent by many followers."""

    def __init__(self) -> None:
        self.chunks: list[CommittedChunk] = []
        self.recent = Recent()
        self.texts: dict[int, bytes] = {}
        self.fetched: list[int] = []  # bytes of JSON each read brought

    def commit(self, size: int) -> Batch:
        # One string a size, shared: only its length counts here.
        json = self.texts.setdefault(size, b"x" * size)
        self.chunks.append(CommittedChunk(Position(len(self.chunks) + 1, 1), 1, json))
        return replace(BATCH, commit_seq=len(self.chunks))

    def fetch(self, batch: Batch, after: Position, limit: int) -> list[CommittedChunk]:
        found = [chunk for chunk in self.chunks[: batch.commit_seq] if chunk.position > after][:limit]
        self.fetched.append(sum(len(chunk.json) for chunk in found))
        return found

    def read(self, batch: Batch, after: Position) -> list[Position]:
        return [chunk.position for chunk in self.recent.read(batch, after, STEP_CHUNKS, self.fetch)]


def test_a_follower_reading_on_past_what_is_kept_gets_every_chunk_once_however_large():
    # A hundred chunks read at once pass KEEP_BYTES: what is let go at the front must not take
    # the chunks between the follower and the newest with it.
    kept = Kept()
    for _ in range(300):
        batch = kept.commit(200_000)
    got, after = [], Position()
    while served := kept.read(batch, after):
        got, after = got + served, served[-1]
    assert got == [chunk.position for chunk in kept.chunks]


def test_long_rows_are_read_no_more_than_kept_and_each_chunk_once_by_a_follower_alone():
    kept = Kept()
    for _ in range(300):
        batch = kept.commit(700_000)  # KEEP_BYTES holds about fifteen of these
    after = Position()
    while served := kept.read(batch, after):
        after = served[-1]
    assert max(kept.fetched) <= KEEP_BYTES and sum(kept.fetched) == 300 * 700_000


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("commit"), st.integers(1, 150), st.sampled_from([10, 90_000, 700_000])),
            st.tuples(st.just("read"), st.integers(0, 3), st.just(0)),
        ),
        max_size=60,
    )
)
@settings(max_examples=60, deadline=None)
def test_followers_anywhere_among_what_is_kept_get_each_committed_chunk_once_in_order(steps):
    kept, batch = Kept(), BATCH
    followers: list[list[Position]] = [[], [], [], []]
    for action, value, size in steps:
        if action == "commit":
            for _ in range(value):
                batch = kept.commit(size)
            continue
        got = followers[value]
        served = kept.read(batch, got[-1] if got else Position())
        got += served
        assert got == [chunk.position for chunk in kept.chunks[: len(got)]]
        if len(served) < STEP_CHUNKS:  # fewer only once all committed so far are given
            assert len(got) == batch.commit_seq


def test_followers_given_the_same_state_share_its_progress_frame_and_a_new_state_makes_another():
    first, second = Follower(BATCH.id, ServerSentEvents(), None), Follower(BATCH.id, ServerSentEvents(), None)  # type: ignore[arg-type]
    state = FollowState(BATCH, in_hand=False)
    (mine,), (theirs,) = first.step(state, Log().read), second.step(state, Log().read)
    assert mine is theirs and mine.raw.startswith(b"event: progress\n")
    later = FollowState(replace(BATCH, processed_count=100), in_hand=False)
    (newer,) = first.step(later, Log().read)
    assert newer is not mine and b'"processed_count":100' in newer.raw
