"""The script batcher: its own RESP packing, and every caller getting its own reply.

``shared.batching`` packs a pipeline of ``EVALSHA`` calls itself and reads the replies with
one timer; these tests hold it to what redis-py's pipeline did: the same bytes on the wire,
each call's result or error reply to its own caller, in order, on a real Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.batching import ScriptBatcher, pack_evalsha
from tests.processes import REDIS_URL

ECHO_OR_FAIL = """
if ARGV[1] == 'fail' then return redis.error_reply('ERR refused ' .. KEYS[1]) end
redis.call('RPUSH', KEYS[1], ARGV[1])
return {ARGV[1], #ARGV}
"""


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield redis
    await redis.aclose()


@pytest.mark.parametrize(
    ("keys", "args"),
    [
        (["trtest:{a}:meta", "trtest:{a}:events"], ["owner", 5, 60000, "chan", "1764000000.25"]),
        (["k"], ["", "ünïcødé ✓ 中文", 0, -7, 1.5, 1e-7, 12345678901234567890, b"\x00\xff"]),
        ([], []),
    ],
)
def test_the_packing_is_redis_pys_byte_for_byte(keys: list[str], args: list[Any]) -> None:
    script = type("Script", (), {"sha": "a" * 40})()
    ours = pack_evalsha([("op", script, keys, args, None)] * 2)  # type: ignore[list-item]
    theirs = b"".join(Connection().pack_command("EVALSHA", "a" * 40, len(keys), *keys, *args))
    assert ours == theirs * 2


def test_an_argument_redis_cannot_take_is_refused() -> None:
    script = type("Script", (), {"sha": "a" * 40})()
    with pytest.raises(DataError, match="NoneType"):
        pack_evalsha([("op", script, [], [None], None)])  # type: ignore[list-item]


async def test_each_caller_gets_its_own_reply_or_error_in_one_pipeline(
    client: aioredis.Redis,
) -> None:
    key = f"trtest-{uuid.uuid4().hex[:10]}:list"
    script = client.register_script(ECHO_OR_FAIL)
    await client.script_load(ECHO_OR_FAIL)
    batcher = ScriptBatcher(client)
    values = [f"v{i}" for i in range(40)]
    values[17] = "fail"
    try:
        results = await asyncio.gather(
            *(batcher.call("test", script, [key], [value]) for value in values),
            return_exceptions=True,
        )
        stored = await client.lrange(key, 0, -1)  # type: ignore[misc]
    finally:
        await client.delete(key)
    assert isinstance(results[17], ResponseError)
    assert str(results[17]) == f"refused {key}"
    assert [r for i, r in enumerate(results) if i != 17] == [
        [value, 1] for i, value in enumerate(values) if i != 17
    ]
    assert stored == [value for value in values if value != "fail"]  # in the callers' order


async def test_a_script_redis_does_not_know_is_loaded_and_run(client: aioredis.Redis) -> None:
    key = f"trtest-{uuid.uuid4().hex[:10]}:list"
    # a script never loaded: EVALSHA answers NOSCRIPT, as after a Redis restart
    script = client.register_script(ECHO_OR_FAIL + f"-- {uuid.uuid4().hex}\n")
    batcher = ScriptBatcher(client)
    try:
        assert await batcher.call("test", script, [key], ["after a restart"]) == [
            "after a restart",
            1,
        ]
    finally:
        await client.delete(key)


async def test_a_redis_that_does_not_answer_times_out_as_redis_py_says_it() -> None:
    """A connection that takes the commands and never answers: every caller of the pipeline
    gets redis-py's ``TimeoutError`` (which ``until_redis_answers`` retries), not asyncio's."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = aioredis.Redis(port=port, socket_timeout=0.3, decode_responses=True)
    script = redis.register_script(ECHO_OR_FAIL)
    batcher = ScriptBatcher(redis)
    try:
        results = await asyncio.gather(
            *(batcher.call("test", script, ["k"], [str(i)]) for i in range(3)),
            return_exceptions=True,
        )
    finally:
        await redis.aclose()
        for writer in connections:
            writer.close()
        server.close()
    assert all(isinstance(result, RedisTimeoutError) for result in results), results
