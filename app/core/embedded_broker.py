"""kombu's SQLAlchemy transport tuned for the embedded mode's SQLite broker.

The stock transport hands every transport option to create_engine() (so none can be
set) and polls once a second, which caps a local worker at about one task a second."""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import create_engine, event
from sqlalchemy.exc import IntegrityError

SCHEME = "imgproc-sqlite"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


class Channel(kombu_sqlalchemy.Channel):
    def _engine_from_config(self):  # type: ignore[no-untyped-def]
        engine = create_engine(self.connection.client.hostname, connect_args={"timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    def _get_or_create(self, queue):  # type: ignore[no-untyped-def]
        # kombu's lock is per process: the API and the worker may create the queue at once.
        try:
            return super()._get_or_create(queue)
        except IntegrityError:
            self.session.rollback()
            return self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).one()


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel
    polling_interval = 0.05


def register() -> None:
    TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
