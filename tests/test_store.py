"""The stream store's guarantees, straight against a real Redis: fencing, exactly one
terminal event, the length cap, retention, trimmed offsets."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.errors import OffsetExpired
from shared.events import PRODUCER_LOST, Event
from shared.settings import Settings
from shared.store import Claim, Claimed, Fenced, Signal, StreamFull, StreamStore
from shared.upstream_api import CHAT_COMPLETIONS
from tests.processes import REDIS_URL


@pytest.fixture
async def store() -> AsyncIterator[StreamStore]:
    settings = Settings(
        key_prefix=f"trtest-{uuid.uuid4().hex[:10]}", max_stream_events=5, retention_s=600
    )
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield StreamStore(client, settings)
    async for key in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        await client.delete(key)
    await client.aclose()


async def new_stream(store: StreamStore) -> str:
    stream_id = uuid.uuid4().hex[:22]
    await store.create(
        stream_id,
        model="m",
        request={"model": "m", "messages": []},
        metadata={},
        cancel_on_disconnect_s=None,
    )
    return stream_id


async def test_only_one_claim_and_only_the_lease_holder_appends(store: StreamStore) -> None:
    stream_id = await new_stream(store)
    claimed = await store.claim(stream_id, "worker-a", "up")
    # the lease comes with what to generate: no second round trip for the request
    assert claimed == Claimed(Claim.CLAIMED, CHAT_COMPLETIONS, {"model": "m", "messages": []})
    assert (await store.claim(stream_id, "worker-b", "up")).outcome == Claim.LEASED
    await store.append(stream_id, "worker-a", [Event.token("one")], 1)
    with pytest.raises(Fenced):
        await store.append(stream_id, "worker-b", [Event.token("two")], 2)
    assert await store.heartbeat(stream_id, "worker-b") == Signal.FENCED
    ending = await store.finish(stream_id, Event.done("stop"), mode="owner", owner="worker-b")
    assert ending.refused == "fenced"
    assert [e.event for e in await store.read(stream_id, "0-0", 10)] == [Event.token("one")]


async def test_a_second_run_after_a_crash_declares_the_stream_lost(store: StreamStore) -> None:
    stream_id = await new_stream(store)
    assert (await store.claim(stream_id, "crashed", "up")).outcome == Claim.CLAIMED
    await store.append(stream_id, "crashed", [Event.token("partial")], 1)
    await store.redis.delete(store.keys.lease(stream_id))  # the lease ran out
    assert (await store.claim(stream_id, "second-run", "up")).outcome == Claim.ORPHANED
    # a live worker holding the lease would be left alone
    assert (await store.finish(stream_id, PRODUCER_LOST, mode="orphan")).offset is not None
    with pytest.raises(Fenced):  # the "dead" worker, had it only been slow
        await store.append(stream_id, "crashed", [Event.token("late")], 2)
    events = await store.read(stream_id, "0-0", 10)
    assert [e.type.value for e in events] == ["token", "error"]
    status = await store.status(stream_id)
    assert status is not None
    assert (status.status.value, status.error) == ("failed", PRODUCER_LOST.payload())


async def test_an_append_sent_again_after_a_lost_reply_is_not_applied_twice(
    store: StreamStore,
) -> None:
    stream_id = await new_stream(store)
    await store.claim(stream_id, "w", "up")
    first = await store.append(stream_id, "w", [Event.token("a")], 1)
    assert await store.append(stream_id, "w", [Event.token("a")], 1) == first  # the retry
    second = await store.append(stream_id, "w", [Event.token("b")], 2)
    with pytest.raises(RuntimeError, match="does not follow"):
        await store.append(stream_id, "w", [Event.token("d")], 4)
    events = await store.read(stream_id, "0-0", 10)
    assert [(e.offset, e.event) for e in events] == [
        (first, Event.token("a")),
        (second, Event.token("b")),
    ]
    status = await store.status(stream_id)
    assert status is not None and status.event_count == 2


async def test_orphan_check_spares_a_live_worker(store: StreamStore) -> None:
    stream_id = await new_stream(store)
    await store.claim(stream_id, "alive", "up")
    assert (await store.finish(stream_id, PRODUCER_LOST, mode="orphan")).refused == "alive"


async def test_exactly_one_terminal_event(store: StreamStore) -> None:
    stream_id = await new_stream(store)
    await store.claim(stream_id, "w", "up")
    first = await store.finish(stream_id, Event.done("stop"), mode="owner", owner="w")
    second = await store.finish(stream_id, Event.done("cancelled"), mode="queued")
    third = await store.finish(stream_id, PRODUCER_LOST, mode="orphan")
    assert first.offset is not None
    assert (second.refused, third.refused) == ("ended", "ended")
    assert len(await store.read(stream_id, "0-0", 10)) == 1


async def test_length_cap_keeps_a_slot_for_the_terminal_event(store: StreamStore) -> None:
    stream_id = await new_stream(store)  # max_stream_events=5
    await store.claim(stream_id, "w", "up")
    for i in range(4):
        await store.append(stream_id, "w", [Event.token(str(i))], i + 1)
    with pytest.raises(StreamFull):
        await store.append(stream_id, "w", [Event.token("5")], 5)
    await store.finish(stream_id, Event.done("length"), mode="owner", owner="w")
    assert len(await store.read(stream_id, "0-0", 10)) == 5


async def test_finished_streams_expire_after_the_retention_time(store: StreamStore) -> None:
    stream_id = await new_stream(store)
    await store.claim(stream_id, "w", "up")
    await store.append(stream_id, "w", [Event.token("x")], 1)
    await store.finish(stream_id, Event.done("stop"), mode="owner", owner="w")
    for key in (store.keys.meta(stream_id), store.keys.events(stream_id)):
        assert 590 <= await store.redis.ttl(key) <= 600
    assert await store.redis.exists(store.keys.lease(stream_id)) == 0


async def test_trimmed_events_are_offset_expired_never_a_silent_gap(store: StreamStore) -> None:
    stream_id = await new_stream(store)
    await store.claim(stream_id, "w", "up")
    offsets = [await store.append(stream_id, "w", [Event.token(str(i))], i + 1) for i in range(4)]
    meta, length = await store.meta_and_length(stream_id)
    assert meta is not None and meta["event_count"] == "4" and length == 4
    await store.check_resumable(stream_id, "0-0", 4, length)
    await store.redis.xtrim(store.keys.events(stream_id), maxlen=2, approximate=False)
    _, length = await store.meta_and_length(stream_id)
    assert length == 2
    for lost in ("0-0", offsets[0], offsets[1]):
        # offsets[1] is conservative: Redis cannot tell whether it was the last entry trimmed
        with pytest.raises(OffsetExpired):
            await store.check_resumable(stream_id, lost, 4, length)
    await store.check_resumable(stream_id, offsets[2], 4, length)  # what follows is all there


async def test_cancel_of_a_queued_stream_wins_over_a_later_claim(store: StreamStore) -> None:
    stream_id = await new_stream(store)
    assert await store.request_cancel(stream_id) == "queued"
    assert (await store.finish(stream_id, Event.done("cancelled"), mode="queued")).offset
    assert (await store.claim(stream_id, "w", "up")).outcome == "cancelled"
    assert await store.request_cancel(stream_id) == "cancelled"
    assert await store.request_cancel("no-such-stream-000000") == "missing"


async def test_the_index_sweep_drops_expired_streams_only(store: StreamStore) -> None:
    ids = [await new_stream(store) for _ in range(5)]
    for stream_id in ids[1::2]:  # the 2nd and 4th expired
        await store.redis.delete(store.keys.meta(stream_id))
    # two entries at a time, from the oldest: where to go on from, and how many went
    after, removed = await store.prune_index(None, 2)
    assert removed == 1 and after is not None
    after, removed = await store.prune_index(after, 2)
    assert removed == 1 and after is not None
    assert await store.prune_index(after, 2) == (None, 0)  # the last one, alive; the end
    kept = await store.redis.zrange(store.keys.index, 0, -1)
    assert kept == ids[0::2]
