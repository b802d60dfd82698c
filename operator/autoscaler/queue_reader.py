"""Reading the Celery queue out of Redis: the only module that talks to the broker.

Celery on kombu's Redis transport keeps, per queue ``q``:

* waiting messages in the list ``q`` and, with priorities, in ``q\\x06\\x16<n>`` (n = 1..9;
  the default steps are 3, 6, 9). ``waiting`` is the sum of ``LLEN`` over all of them.
* delivered-but-unacknowledged messages (``acks_late``: the task is running or about to)
  in the hash ``unacked``: ``delivery_tag -> JSON [message, exchange, routing_key]``, with
  the index ``unacked_index`` (a zset of delivery times). The hash is shared by every queue
  of the broker database, so ``in_flight`` counts only the entries that kombu would put back
  on one of *our* queues: anonymous exchange -> the routing key is the queue; otherwise
  the bindings ``_kombu.binding.<exchange>`` (members ``routing_key\\x06\\x16pattern\\x06\\x16queue``)
  decide, as kombu's own restore does. An exchange without a binding table falls back to
  "routing key or exchange is one of our queues" (Celery names both after the queue).
  Entries left behind by a killed worker stay until kombu restores them (visibility
  timeout), and they are counted: that work still has to be done by someone.

Missing keys count as 0. Any Redis failure raises ``QueueUnavailable``.

With ``spec.redis.sentinel`` the reader asks the sentinels for the current master of
``masterName`` on every (re)connection (redis-py's ``Sentinel.master_for``), so it follows a
failover; the URL then gives only the database, the user and the password.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from app.core.addresses import parse_host_port
from autoscaler.scaling import Observation, PolicyError

SEP = "\x06\x16"
PRIORITIES = range(1, 10)
UNACKED_KEY = "unacked"
BINDING_KEY = "_kombu.binding.{}"
SOCKET_TIMEOUT = 2.0  # seconds; a poll must never hang on a dead broker


class QueueUnavailable(Exception):
    """Redis could not be read (connection refused, timeout, auth, wrong key type...)."""


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class RedisSource:
    """Where to read: parsed from ``spec.redis`` and ``spec.queues``."""

    url: str
    queues: tuple[str, ...]
    key_prefix: str = ""
    secret_ref: SecretRef | None = None
    username: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()  # (host, port) of each sentinel; () = no Sentinel
    master_name: str = ""
    sentinel_auth: bool = True  # log in to the sentinels with the password too

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> RedisSource:
        problems: list[str] = []
        conf = spec.get("redis") or {}
        queues = spec.get("queues") or ["imgproc"]
        if not isinstance(queues, list) or not all(isinstance(q, str) and q for q in queues):
            problems.append("queues must be a list of non-empty names")
        url = conf.get("url")
        host = conf.get("host")
        if bool(url) == bool(host):
            problems.append("set exactly one of redis.url and redis.host")
        elif host:
            scheme = "rediss" if conf.get("tls") else "redis"
            url = f"{scheme}://{host}:{conf.get('port', 6379)}/{conf.get('db', 0)}"
        if url and not str(url).startswith(("redis://", "rediss://")):
            problems.append("redis.url must start with redis:// or rediss://")
        elif url:
            try:
                parse_url(str(url))
            except ValueError as exc:  # a port or db that is not a number, for instance
                problems.append(f"redis address {redacted(str(url))} is invalid: {exc}")
        ref = conf.get("secretRef")
        secret = None
        if ref:
            if not (isinstance(ref, Mapping) and ref.get("name") and ref.get("key")):
                problems.append("redis.secretRef needs name and key")
            else:
                secret = SecretRef(str(ref["name"]), str(ref["key"]))
        sentinels: list[tuple[str, int]] = []
        sentinel = conf.get("sentinel")
        if sentinel is not None:
            addresses = sentinel.get("addresses") if isinstance(sentinel, Mapping) else None
            if not (isinstance(addresses, list) and addresses):
                problems.append("redis.sentinel.addresses must list host:port of at least one sentinel")
            else:
                for address in addresses:
                    try:
                        sentinels.append(parse_host_port(str(address)))  # the port is required here
                    except ValueError as exc:
                        problems.append(f"redis.sentinel.addresses: {exc}")
            if not (isinstance(sentinel, Mapping) and sentinel.get("masterName")):
                problems.append("redis.sentinel.masterName must be set")
            if url and str(url).startswith("rediss://"):
                problems.append("redis.sentinel does not support TLS")
        if problems:
            raise PolicyError(problems)
        return cls(
            str(url),
            tuple(queues),
            str(conf.get("keyPrefix") or ""),
            secret,
            conf.get("username"),
            tuple(sentinels),
            str((sentinel or {}).get("masterName") or ""),
            bool((sentinel or {}).get("authenticate", True)),
        )

    def lists(self) -> list[str]:
        """Every Redis list that can hold a waiting message of our queues."""
        return [
            f"{self.key_prefix}{q}{suffix}" for q in self.queues for suffix in ("", *(f"{SEP}{n}" for n in PRIORITIES))
        ]


@dataclass
class QueueReader:
    """A cached connection for one source; ``observe()`` never raises anything but
    ``QueueUnavailable``. Build it again when the source or the password changes."""

    source: RedisSource
    password: str | None = None
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        kwargs: dict[str, Any] = dict(
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
            decode_responses=False,
        )
        options = parse_url(self.source.url)  # the URL would win over keyword arguments in from_url
        if self.password is not None:
            options["password"] = self.password
        if self.source.username:
            options["username"] = self.source.username
        # Our timeouts win over the URL's query options: a poll must stay bounded.
        self._sentinel: Sentinel | None = None
        if self.source.sentinels:
            options.pop("host", None)
            options.pop("port", None)
            sentinel_kwargs: dict[str, Any] = {
                "socket_timeout": SOCKET_TIMEOUT,
                "socket_connect_timeout": SOCKET_TIMEOUT,
            }
            if self.source.sentinel_auth and options.get("password"):
                sentinel_kwargs["password"] = options["password"]
            self._sentinel = Sentinel(list(self.source.sentinels), sentinel_kwargs=sentinel_kwargs)
            self.client = self._sentinel.master_for(self.source.master_name, **{**options, **kwargs})
        else:
            self.client = redis.Redis(connection_pool=redis.ConnectionPool(**{**options, **kwargs}))

    def close(self) -> None:
        self.client.close()
        self.client.connection_pool.disconnect()  # a pool passed in is not closed with the client
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                sentinel.close()
                sentinel.connection_pool.disconnect()

    def observe(self) -> Observation:
        try:
            return Observation(waiting=self.waiting(), in_flight=self.in_flight())
        except QueueUnavailable as exc:
            return Observation.failed(str(exc))

    def waiting(self) -> int:
        names = self.source.lists()
        with _errors():
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.llen(name)
            return sum(int(n) for n in pipe.execute())

    def in_flight(self) -> int:
        prefix = self.source.key_prefix
        with _errors():
            routes: list[tuple[str, str]] = []
            for _tag, raw in self.client.hscan_iter(f"{prefix}{UNACKED_KEY}", count=500):
                route = _route(raw)
                if route is not None:
                    routes.append(route)
            exchanges = sorted({ex for ex, _ in routes if ex})
            tables: dict[str, list[tuple[str, str]]] = {}
            if exchanges:
                pipe = self.client.pipeline(transaction=False)
                for ex in exchanges:
                    pipe.smembers(f"{prefix}{BINDING_KEY.format(ex)}")
                for ex, members in zip(exchanges, pipe.execute(), strict=True):
                    tables[ex] = _bindings(members)
        return count_ours(routes, tables, self.source.queues)


def count_ours(
    routes: Iterable[tuple[str, str]], tables: Mapping[str, list[tuple[str, str]]], queues: Iterable[str]
) -> int:
    """How many ``(exchange, routing_key)`` deliveries belong to ``queues`` (pure)."""
    ours = set(queues)
    total = 0
    for exchange, routing_key in routes:
        if not exchange:
            hit = routing_key in ours
        elif tables.get(exchange):
            hit = any(queue in ours and rk == routing_key for rk, queue in tables[exchange])
        else:
            hit = routing_key in ours or exchange in ours
        total += hit
    return total


def _route(raw: bytes) -> tuple[str, str] | None:
    try:
        entry = json.loads(raw)
        return str(entry[1] or ""), str(entry[2] or "")
    except (ValueError, TypeError, IndexError, KeyError):
        return None  # not a kombu entry: not ours to count


def _bindings(members: Iterable[bytes]) -> list[tuple[str, str]]:
    """``(routing_key, queue)`` pairs from kombu's binding set."""
    pairs = []
    for member in members:
        parts = member.decode(errors="replace").split(SEP)
        if len(parts) == 3:
            pairs.append((parts[0], parts[2]))
    return pairs


class _errors:
    """Turn every redis-py failure into QueueUnavailable with a short message."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and isinstance(exc, redis.RedisError | OSError):
            raise QueueUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return False


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{quote(user) + ':***@' if user else '***@'}{host}"
