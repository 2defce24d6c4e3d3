"""The cache backend: Django's Redis cache, with one Redis client per connection pool.

Django's RedisCacheClient builds a new `redis.Redis` object for every cache call (the
documented hook for a custom client is `get_client`). Building it cost more CPU than the
command it sends: DRF's throttle reads and writes its history on every order placement,
and the task flags of marketplace/celery.py are set twice per order. Here each pool keeps
its client. A client holds no connection of its own (it takes one from the pool per
command), so sharing it is as safe as sharing the pool, which Django already does.
"""

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
