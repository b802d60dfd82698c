from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.celery_app import celery_config
from app.core.config import Settings
from app.core.redis_client import celery_broker


def sentinel_settings(**extra) -> Settings:
    return Settings(
        BROKER_URL="redis://:pw@ignored:6379/2",
        REDIS_SENTINELS="s1:26379, s2,[::1]:26380",
        REDIS_SENTINEL_MASTER="broker",
        **extra,
    )


def test_sentinel_addresses_are_parsed_with_the_default_port():
    assert sentinel_settings().redis_sentinels == [("s1", 26379), ("s2", 26379), ("::1", 26380)]
    assert Settings().redis_sentinels == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"REDIS_SENTINELS": "s1:port", "BROKER_URL": "redis://h/0"}, "is not host:port"),
        ({"REDIS_SENTINELS": "s1:26379"}, "needs a redis:// IMGPROC_BROKER_URL"),
        ({"REDIS_SENTINELS": "s1:26379", "BROKER_URL": "rediss://h/0"}, "needs a redis://"),
        (
            {"REDIS_SENTINELS": "s1:26379", "BROKER_URL": "redis://h/0", "REDIS_SENTINEL_MASTER": ""},
            "must not be empty",
        ),
    ],
)
def test_bad_sentinel_settings_refuse_to_start(settings, message):
    with pytest.raises(ValidationError, match=message):
        Settings(**settings)


def test_celery_gets_kombus_sentinel_url_with_the_brokers_credentials_and_database():
    url, options = celery_broker(sentinel_settings(REDIS_SENTINEL_PASSWORD="spw"))
    assert url == "sentinel://:pw@s1:26379/2;sentinel://:pw@s2:26379/2;sentinel://:pw@[::1]:26380/2"
    assert options["master_name"] == "broker"
    assert options["sentinel_kwargs"]["password"] == "spw"
    conf = celery_config(sentinel_settings())
    assert conf["broker_url"].startswith("sentinel://")
    assert conf["broker_transport_options"]["master_name"] == "broker"
    assert "password" not in conf["broker_transport_options"]["sentinel_kwargs"]  # sentinels without AUTH
    assert conf["broker_transport_options"]["visibility_timeout"] == 3600  # the Redis options still apply


def test_without_sentinels_nothing_changes():
    settings = Settings(BROKER_URL="redis://:pw@h:6379/0")
    assert celery_broker(settings) == ("redis://:pw@h:6379/0", {})


def test_a_master_change_the_client_follows_is_counted_once(monkeypatch):
    """The sentinels name the master on every new connection (redis-py); a different address
    than the last one is a failover this process followed: imgproc_redis_master_changes_total."""
    from redis.sentinel import Sentinel

    from app.core.redis_client import FollowingSentinel, redis_client
    from tests.support.metrics import value

    answers = iter([("10.0.0.1", 6379), ("10.0.0.1", 6379), ("10.0.0.2", 6379), ("10.0.0.2", 6379)])
    monkeypatch.setattr(Sentinel, "discover_master", lambda self, name: next(answers))
    before = value("imgproc_redis_master_changes_total")
    client = redis_client(sentinel_settings())
    pool = client.connection_pool
    assert isinstance(pool.sentinel_manager, FollowingSentinel)
    seen = [pool.get_master_address() for _ in range(4)]  # what each new connection does
    assert seen[1] == ("10.0.0.1", 6379) and seen[2] == ("10.0.0.2", 6379)
    assert value("imgproc_redis_master_changes_total") - before == 1  # the first answer is no change
