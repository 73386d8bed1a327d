"""Redis connections: a real server from `redis_url`, or one in-process substitute shared by the process."""

from __future__ import annotations

import functools

import redis

from service.settings import Settings


@functools.cache
def _embedded_server() -> object:
    import fakeredis  # only the embedded mode needs it

    return fakeredis.FakeServer()


def redis_client(settings: Settings, *, blocking: bool = False) -> redis.Redis:
    """A client for the configured Redis; every client in embedded mode shares one in-process server.

    Requests time out after 10 s so the API answers 503 instead of hanging; `blocking` clients (an RQ
    worker's, which waits minutes in BLPOP for the next job) have no read timeout.
    """
    if settings.redis_url is None:
        import fakeredis

        return fakeredis.FakeRedis(server=_embedded_server())
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=None if blocking else 10,
        socket_keepalive=True,
        health_check_interval=30,
    )
