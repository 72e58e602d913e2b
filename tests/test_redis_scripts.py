"""Batched script calls (server/stores/redis/client.py) survive a Redis that lost its scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.stores.redis.client import RedisContext, run_scripts
from tests.support.redis_server import RedisServer


@pytest.mark.gen_test(timeout=30)
async def test_a_batch_loads_the_scripts_again_after_redis_forgot_them(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    context = RedisContext(server.url, log_ttl_seconds=1, max_duration_seconds=1)
    try:
        double = context.client.register_script("return tonumber(ARGV[1]) * 2")
        echo = context.client.register_script("return KEYS[1]")
        calls = [(double, [], [21]), (echo, ["k"], [])]
        assert await run_scripts(context.client, calls) == [42, b"k"]
        server.client().script_flush()  # as after a restart
        assert await run_scripts(context.client, calls) == [42, b"k"]
    finally:
        await context.close()
        server.stop()
