"""The cache backend keeps one Redis client per connection pool (marketplace/cache.py)."""

import threading

from django.core.cache import cache, caches

from marketplace.cache import RedisCache


def test_the_default_cache_is_ours_and_reuses_its_client():
    assert isinstance(caches["default"], RedisCache)
    inner = cache._cache
    first = inner.get_client("a", write=True)

    assert inner.get_client("b", write=True) is first
    assert inner.get_client("c") is first  # one server: reads use the same pool


def test_the_cache_still_does_what_django_s_does():
    key = "cache-backend-test"
    cache.delete(key)

    assert cache.add(key, {"n": 1}, timeout=30) is True
    assert cache.add(key, {"n": 2}, timeout=30) is False
    assert cache.get(key) == {"n": 1}
    cache.set(key, [1, 2], timeout=30)
    assert cache.get(key) == [1, 2]
    assert cache.delete(key) is True
    assert cache.get(key, "gone") == "gone"


def test_each_thread_has_its_own_cache_and_client():
    """Django's caches are per thread; so are the clients kept here."""
    seen = []

    def look() -> None:
        seen.append(cache._cache.get_client(write=True))
        seen.append(cache.add("cache-backend-thread", 1, timeout=5))

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    assert seen[0] is not cache._cache.get_client(write=True)
    cache.delete("cache-backend-thread")
