"""A worker starts a new generation when it is enqueued, not at its next poll of the queue:
the gateway announces each job, and the worker looks at once (``shared.queue.Wakeups``)."""

from __future__ import annotations

import httpx

from tests.processes import API_KEY, Stack

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_a_new_job_starts_long_before_the_next_poll(stack: Stack) -> None:
    _, base = stack.gateway()
    stack.worker(TOKENRELAY_WORKER_POLL_S="30")  # its first poll is at start, the next in 30 s
    body = {"model": "mock?tokens=3", "messages": [{"role": "user", "content": "wake up"}]}
    with httpx.Client(base_url=base, headers=AUTH, timeout=20) as http:
        for _ in range(3):  # each after the worker's last look at the queue
            created = http.post("/v1/streams", json=body).json()
            text = http.get(f"/v1/streams/{created['id']}/events", params={"format": "text"})
            assert text.status_code == 200
            status = http.get(f"/v1/streams/{created['id']}").json()
            assert status["status"] == "completed"
            assert status["started_at"] - status["created_at"] < 1.0, status
