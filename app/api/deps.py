"""Dependencies, declared once as Annotated aliases."""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from functools import lru_cache
from http.cookies import SimpleCookie
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, make_transient_to_detached

from app.api.errors import Refusal, TooManyRequests, UploadsBusy
from app.api.middleware import ISSUED_COOKIE
from app.api.ratelimit import RateLimiter, make_limiter
from app.core import replica
from app.core.config import Settings, get_settings
from app.core.db import get_sessionmaker
from app.storage import Storage, get_storage
from app.tasks import crud
from app.tasks.records import User


# FastAPI runs a plain `def` dependency in the thread pool, a hand-off that costs more than these
# cached look-ups themselves (each request used several); async ones run in the event loop.
async def settings_dependency() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings_dependency)]


async def get_session() -> AsyncIterator[Session]:
    # No commit here: code after `yield` runs after the response is sent, so every write
    # that a response depends on is committed explicitly in the route.
    # Async, so that making the session (no I/O: it connects on first use) costs no thread-pool
    # hop; closing one that holds a connection rolls it back, which is I/O, so that goes there.
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]


async def storage_dependency() -> Storage:
    return get_storage()


StorageDep = Annotated[Storage, Depends(storage_dependency)]


class KnownUsers:
    """Cookie-token hash -> user id, for the identities this process has seen lately: a hit saves
    the user SELECT every request would make (three of an image's requests: upload, status, download).

    Sound because a user row never changes once made and is never deleted. The one way an id can
    come to mean someone else is a database restored to an earlier point, whose sequence then
    hands the id to a new user: an entry is therefore trusted for TTL_SECONDS only. Bounded by
    MAX_ENTRIES, least recently used out first; only identities found in the database enter, so
    forged cookies cannot fill it."""

    TTL_SECONDS = 60.0
    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()  # plain `def` dependencies run in the thread pool

    def get(self, token_hash: str) -> int | None:
        with self._lock:
            entry = self._entries.get(token_hash)
            if entry is None:
                return None
            user_id, expires = entry
            if time.monotonic() >= expires:
                del self._entries[token_hash]
                return None
            self._entries.move_to_end(token_hash)
            return user_id

    def add(self, token_hash: str, user_id: int) -> None:
        with self._lock:
            self._entries[token_hash] = (user_id, time.monotonic() + self.TTL_SECONDS)
            self._entries.move_to_end(token_hash)
            while len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)


@lru_cache  # one per process (tests forget it with the engine: tests/conftest.py reset_caches)
def known_users() -> KnownUsers:
    return KnownUsers()


@lru_cache
def new_user_limiter() -> RateLimiter:
    settings = get_settings()
    return make_limiter(settings, "new-users", settings.NEW_USERS_PER_MINUTE_PER_IP, 60)


@lru_cache
def upload_limiter() -> RateLimiter:
    settings = get_settings()
    return make_limiter(settings, "uploads", settings.UPLOADS_PER_MINUTE_PER_USER, 60)


def _cookie_header(settings: Settings, token: str) -> str:
    cookie: SimpleCookie = SimpleCookie()
    cookie[settings.COOKIE_NAME] = token
    morsel = cookie[settings.COOKIE_NAME]
    morsel["path"] = "/"
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    morsel["max-age"] = settings.COOKIE_MAX_AGE
    if settings.cookie_secure:
        morsel["secure"] = True
    return morsel.OutputString()


def _current_user(request: Request, session: Session, settings: Settings, *, on_replica: bool) -> User:
    token = request.cookies.get(settings.COOKIE_NAME)
    if token and len(token) <= 128:
        token_hash = crud.hash_token(token)
        if (user_id := known_users().get(token_hash)) is not None:
            known = User(id=user_id, token_hash=token_hash)
            make_transient_to_detached(known)
            return session.merge(known, load=False)  # SQLAlchemy's way in for a cached row: no SELECT

        def lookup(s: Session) -> User | None:
            return crud.get_user_by_token_hash(session=s, token_hash=token_hash)

        # A user never changes once created: any row the replica has is right; a miss (a user
        # made a moment ago) is asked of the primary.
        user = replica.read(session, lookup, good=lambda u: u is not None) if on_replica else lookup(session)
        if user is not None:
            known_users().add(token_hash, user.id)
            return user
    client_ip = request.client.host if request.client else "unknown"
    wait = new_user_limiter().acquire(client_ip)
    if wait:
        raise TooManyRequests("Too many new sessions from this address; retry later.", wait, Refusal.SESSION_RATE_LIMIT)
    user, token = crud.create_user(session=session)
    request.scope[ISSUED_COOKIE]["value"] = _cookie_header(settings, token)
    return user


def get_current_user(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    """The caller's anonymous identity; a request without a valid cookie gets a new one."""
    return _current_user(request, session, settings, on_replica=False)


def get_reading_user(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    """As get_current_user, for the read-only status routes: looked up on the read replica
    when one is configured and usable (app.core.replica)."""
    return _current_user(request, session, settings, on_replica=True)


def get_uploading_user(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    """As get_current_user, for a route that reads a request body afterwards: the session gives
    its connection back to the pool before returning, so a client sending its body slowly holds
    no database connection (about 15 slow uploads sharing one cookie used to take the whole
    pool, issue 20). The route's next use of the session takes a fresh connection."""
    try:
        return _current_user(request, session, settings, on_replica=False)
    finally:
        session.close()


class UploadSlots:
    """Uploads in flight in this process, in all and per client address. Counted in the event
    loop only (async code, no thread), so plain integers are enough."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.per_client: Counter[str] = Counter()

    def acquire(self, client: str, settings: Settings) -> None:
        """TooManyRequests for a client at its own cap, UploadsBusy for a full process."""
        if self.per_client[client] >= settings.MAX_CONCURRENT_UPLOADS_PER_CLIENT:
            raise TooManyRequests(
                "Too many uploads in progress from this address; retry shortly.",
                settings.UPLOADS_BUSY_RETRY_AFTER_SECONDS,
                Refusal.CLIENT_BUSY,
            )
        if self.in_flight >= settings.MAX_CONCURRENT_UPLOADS:
            raise UploadsBusy(settings.UPLOADS_BUSY_RETRY_AFTER_SECONDS)
        self.in_flight += 1
        self.per_client[client] += 1

    def release(self, client: str) -> None:
        self.in_flight -= 1
        self.per_client[client] -= 1
        if not self.per_client[client]:
            del self.per_client[client]  # bounded by the clients uploading now, not all ever seen


UPLOAD_SLOTS = UploadSlots()


async def upload_slot(request: Request, settings: SettingsDep) -> AsyncIterator[None]:
    """Holds one of the process's upload slots for the request (MAX_CONCURRENT_UPLOADS, at most
    MAX_CONCURRENT_UPLOADS_PER_CLIENT of them per client address), before the identity is looked
    up or a byte of the body is read."""
    client = request.client.host if request.client else "unknown"
    UPLOAD_SLOTS.acquire(client, settings)
    try:
        yield
    finally:
        UPLOAD_SLOTS.release(client)


CurrentUser = Annotated[User, Depends(get_current_user)]
UploadingUser = Annotated[User, Depends(get_uploading_user)]
UploadSlot = Annotated[None, Depends(upload_slot)]
ReadingUser = Annotated[User, Depends(get_reading_user)]
