"""Hostile traffic against a real coordinator process: slow clients must not starve others."""

from __future__ import annotations

import asyncio
import time

import httpx

from gridx.coordinator.cli.cluster import LocalCluster

TRICKLERS = 300
POLLERS = 50


async def _trickle(port: int, stop: asyncio.Event) -> None:
    """Slowloris: start a request and send its headers one byte at a time, never finishing."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    try:
        while not stop.is_set():
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.5)
    except ConnectionError:
        pass  # the server may drop us: that is a fine answer too
    finally:
        writer.close()


async def _siege(cluster: LocalCluster) -> list[float]:
    key = {"Authorization": f"Bearer {cluster.api_key}"}
    async with httpx.AsyncClient(base_url=cluster.url, timeout=60) as http:
        tokens = []
        for i in range(POLLERS):
            r = await http.post("/agent/register", json={"name": f"poller-{i}"}, headers=key)
            assert r.status_code == 201, r.text
            tokens.append(r.json()["node_token"])
        stop = asyncio.Event()
        slow = [asyncio.create_task(_trickle(cluster.port, stop)) for _ in range(TRICKLERS)]
        polls = [
            asyncio.create_task(
                http.post(
                    "/agent/request_task",
                    params={"wait_s": "20"},
                    headers={"Authorization": f"Bearer {t}"},
                )
            )
            for t in tokens
        ]
        await asyncio.sleep(2)  # everyone is connected and parked
        latencies = []
        async with httpx.AsyncClient(base_url=cluster.url, timeout=5) as probe:
            for _ in range(10):
                t = time.perf_counter()
                assert (await probe.get("/healthz")).status_code == 200
                latencies.append(time.perf_counter() - t)
                await asyncio.sleep(0.2)
        assert not any(p.done() for p in polls), "long-polls are still parked"
        stop.set()
        for task in polls:
            task.cancel()
        await asyncio.gather(*slow, *polls, return_exceptions=True)
    return latencies


def test_slowloris_and_parked_long_polls_do_not_starve_healthz(cluster: LocalCluster) -> None:
    latencies = asyncio.run(_siege(cluster))
    assert max(latencies) < 1.0, latencies
