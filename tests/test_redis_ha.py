"""tokenrelay on Redis Cluster (streams spread over three masters, the job queue on its own
Redis) and on Redis Sentinel (the master killed mid-stream; readers finish)."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import httpx

from gateway.durable.store import stream_id_of
from shared.keys import Keys
from tests.client import Read, Relay
from tests.processes import API_KEY, REDIS_URL, Stack
from tests.redis_topologies import cli, cluster, sentinel
from tests.test_crashes import read_until_broken


async def test_streams_spread_over_a_cluster_and_resume(stack: Stack, tmp_path: Path) -> None:
    with cluster(tmp_path) as redis_cluster:
        stack.extra_env.update(
            {"TOKENRELAY_REDIS_URL": redis_cluster.url, "TOKENRELAY_QUEUE_REDIS_URL": REDIS_URL}
        )
        first, first_url = stack.gateway()
        _, second_url = stack.gateway()
        stack.worker()
        async with httpx.AsyncClient(timeout=30) as http:
            relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
            http.base_url = httpx.URL(first_url)
            created = [
                await relay.create(f"cluster {i}", model="mock?tokens=40&rate=40")
                for i in range(24)  # all three nodes get some: 1 - 3 (2/3)^24 > 99.9 %
            ]
            # half read start to end on one gateway, half cut after a few events and resumed
            # on the other
            befores = [Read(200) for _ in created]
            urls = [f"{first_url}/v1/streams/{c['id']}/events" for c in created]
            tasks = [
                asyncio.create_task(read_until_broken(http, url, before))
                for url, before in zip(urls, befores, strict=True)
            ]
            while min(len(b.events) for b in befores) < 3:
                assert not any(t.done() for t in tasks), [b.events[-1] for b in befores if b.events]
                await asyncio.sleep(0.02)
            gateway_pid = first.pid
            # the gateway holds at most its pool (5) per node, plus the hub on the first node
            per_node = [
                cli(port, "client", "list").count(f"name=tokenrelay-gateway:{gateway_pid} ")
                for _, port in redis_cluster.nodes
            ]
            assert all(0 < n <= 5 for n in per_node), per_node
            first.kill()
            await asyncio.gather(*tasks)

            http.base_url = httpx.URL(second_url)
            for stream, before in zip(created, befores, strict=True):
                after = await relay.read_sse(stream["id"], last_event_id=before.events[-1].offset)
                events = before.events + after.events
                assert len({e.offset for e in events}) == len(events)
                assert after.terminal.data["finish_reason"] == "stop"
                sent = (await relay.mock_record(stream["id"]))["sent_text"]
                assert before.text + after.text == sent

        keys = Keys(stack.prefix)
        nodes_of_streams = collections.Counter()
        for stream in created:
            for _, port in redis_cluster.nodes:
                if cli(port, "exists", keys.meta(stream["id"])) == "1":
                    nodes_of_streams[port] += 1
        assert sum(nodes_of_streams.values()) == 24  # each stream on exactly one node
        assert len(nodes_of_streams) == 3, f"streams per node: {dict(nodes_of_streams)}"
        # every key of a stream is on the node of its meta hash (one slot)
        some = created[0]["id"]
        port = next(p for _, p in redis_cluster.nodes if cli(p, "exists", keys.meta(some)) == "1")
        assert cli(port, "exists", keys.events(some)) == "1"


async def test_sentinel_failover_mid_stream_readers_finish(stack: Stack, tmp_path: Path) -> None:
    with sentinel(tmp_path) as watched:
        stack.extra_env.update(
            {
                "TOKENRELAY_REDIS_URL": watched.url,
                "TOKENRELAY_LEASE_S": "12",  # the failover (~2-4 s) must not lose the lease
                "TOKENRELAY_REDIS_RETRY_S": "20",
            }
        )
        _, base = stack.gateway()
        stack.worker()
        old_master = watched.master_port()
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
            created = [
                await relay.create(f"failover {i}", model="mock?tokens=150&rate=25")
                for i in range(5)
            ]
            reads = [Read(200) for _ in created]
            urls = [f"/v1/streams/{c['id']}/events" for c in created]

            async def follow(url: str, read: Read) -> None:
                # a reader that resumes after its response ends, as the browser library does
                while not read.events or read.events[-1].type not in ("done", "error"):
                    headers = {"Authorization": f"Bearer {API_KEY}"}
                    if read.events:
                        headers["Last-Event-ID"] = str(read.events[-1].offset)
                    await read_until_broken_with(http, url, read, headers)
                    await asyncio.sleep(0.2)

            following = [
                asyncio.create_task(follow(u, r)) for u, r in zip(urls, reads, strict=True)
            ]
            while min(len(r.events) for r in reads) < 5:
                await asyncio.sleep(0.05)
            watched.master[0].kill()  # the master dies mid-stream
            killed_at = time.monotonic()
            deadline = killed_at + 20
            while watched.master_port() == old_master:
                assert time.monotonic() < deadline, "Sentinel never failed over"
                await asyncio.sleep(0.2)
            await asyncio.wait_for(asyncio.gather(*following), 40)

            for stream, read in zip(created, reads, strict=True):
                assert len({e.offset for e in read.events}) == len(read.events)
                terminal = read.events[-1]
                sent = (await relay.mock_record(stream["id"]))["sent_text"]
                if terminal.type == "done":
                    assert read.text == sent
                else:  # events written but not yet replicated are lost with the master
                    assert terminal.data["code"] in ("producer_lost", "internal")
                    assert sent.startswith(read.text)
            done = [r for r in reads if r.events[-1].type == "done"]
            assert done, "no stream finished across the failover"
            assert watched.master_port() == watched.replica[1]


async def read_until_broken_with(
    http: httpx.AsyncClient, url: str, read: Read, headers: dict[str, str]
) -> None:
    from tests.client import sse_events

    try:
        async with http.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                return
            async for event in sse_events(response, read):
                read.events.append(event)
                if event.type in ("done", "error"):
                    return
    except httpx.HTTPError:
        pass


async def test_agent_runs_on_a_cluster_each_in_one_slot(stack: Stack, tmp_path: Path) -> None:
    """Durable streams spread over the masters; a generation writing into one shares its
    slot (one script writes both), and a read through another gateway gets it all."""
    with cluster(tmp_path) as redis_cluster:
        stack.extra_env.update(
            {"TOKENRELAY_REDIS_URL": redis_cluster.url, "TOKENRELAY_QUEUE_REDIS_URL": REDIS_URL}
        )
        _, writer_url = stack.gateway()
        _, reader_url = stack.gateway()
        stack.worker()
        paths = [f"runs/cluster-{i}" for i in range(12)]  # all three masters: > 99 %
        async with httpx.AsyncClient(timeout=30) as http:
            auth = {"Authorization": f"Bearer {API_KEY}"}
            generations = {}
            for path in paths:
                url = f"{writer_url}/v1/ds/{path}"
                created = await http.put(url, headers={**auth, "Content-Type": "application/json"})
                assert created.status_code == 201, created.text
                await http.post(url, headers=auth, json=[{"type": "user", "text": path}])
                started = await http.post(
                    f"{writer_url}/v1/streams",
                    headers=auth,
                    json={
                        "model": "mock?tokens=6&rate=200",
                        "messages": [{"role": "user", "content": path}],
                        "durable_stream": path,
                    },
                )
                assert started.status_code == 201, started.text
                generations[path] = started.json()["id"]
            relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
            http.base_url = httpx.URL(reader_url)
            for path in paths:
                generated = await relay.read_sse(generations[path])  # waits for its end
                url = f"{writer_url}/v1/ds/{path}"
                await http.post(url, headers=auth, json=[{"type": "status", "text": "done"}])
                closed = await http.post(url, headers={**auth, "Stream-Closed": "true"})
                assert closed.status_code == 204, closed.text
                read = await http.get(f"{reader_url}/v1/ds/{path}?offset=-1", headers=auth)
                messages = read.json()
                assert read.headers["Stream-Closed"] == "true"
                assert messages[0] == {"type": "user", "text": path}
                assert messages[-1] == {"type": "status", "text": "done"}
                middle = messages[1:-1]
                assert {m["generation"] for m in middle} == {generations[path]}
                assert "".join(m["text"] for m in middle if m["type"] == "token") == generated.text
                assert middle[-1]["type"] == "done"
                assert middle[-1]["finish_reason"] == generated.terminal.data["finish_reason"]

        keys = Keys(stack.prefix)
        nodes: collections.Counter[int] = collections.Counter()
        for path in paths:
            durable = stream_id_of(path)
            (port,) = [
                p for _, p in redis_cluster.nodes if cli(p, "exists", keys.meta(durable)) == "1"
            ]
            nodes[port] += 1
            # the generation's keys live on the durable stream's node
            assert cli(port, "exists", keys.meta(generations[path])) == "1"
            assert cli(port, "exists", keys.events(generations[path])) == "1"
        assert len(nodes) == 3, f"durable streams per node: {dict(nodes)}"
