"""The one place configuration is read: environment variables prefixed IMGPROC_."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, computed_field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.addresses import parse_host_port
from app.imaging.colour import STANDARD_CMYK_PROFILE_PATH
from app.imaging.models import Spec
from app.imaging.presets import Preset, PresetError, output_count, parse_presets

_DEFAULT_SPEC = Spec()
# Setting -> the Spec field it gives. Spec validates them (one set of limits, not two).
_SPEC_SETTINGS = {
    "OUTPUT_MAX_WIDTH": "max_width",
    "OUTPUT_MAX_HEIGHT": "max_height",
    "JPEG_QUALITY": "quality",
    "MAX_IMAGE_PIXELS": "max_pixels",
}
# The upstream instrumentations tracing installs (app.core.tracing), by the names
# OTEL_PYTHON_DISABLED_INSTRUMENTATIONS uses for them (their entry points').
TRACING_INSTRUMENTATIONS = ("fastapi", "celery", "httpx", "redis", "botocore", "sqlalchemy")


@lru_cache
def _local_secret(path: Path) -> bytes:
    """The embedded mode's key, created once and shared through DATA_DIR by API and worker;
    read once per process (it is needed for every report)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        tmp.write_text(secrets.token_urlsafe(32))
        tmp.chmod(0o600)
        # link, not rename: if two processes race, the first key wins and both read it
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


class MissingWebhookSecret(RuntimeError):
    pass


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGPROC_", env_ignore_empty=True, extra="ignore")

    # --- where things live -------------------------------------------------------------
    # Embedded default: SQLite + kombu's SQLAlchemy transport over SQLite, files under ./data.
    DATA_DIR: Path = Path("data")
    DATABASE_URL: str = ""  # default: sqlite:///<DATA_DIR>/imgproc.sqlite3
    # A PostgreSQL streaming replica (hot standby) of DATABASE_URL. The API's status reads
    # (/api/isReady, /api/tasks, /api/tasks/{id}) go there while it answers and its replay lag
    # stays within DATABASE_REPLICA_MAX_LAG_SECONDS; everything else uses DATABASE_URL
    # (app.core.replica says when an answer of the replica is taken). Empty: no replica.
    DATABASE_REPLICA_URL: str = ""
    DATABASE_REPLICA_MAX_LAG_SECONDS: float = Field(5.0, ge=0)
    # How long a lag measurement (two one-row queries) or a failed connection is trusted.
    DATABASE_REPLICA_CHECK_SECONDS: float = Field(1.0, gt=0, le=60)
    BROKER_URL: str = ""  # default: imgproc-sqlite+sqlite:///<DATA_DIR>/broker.sqlite3
    # Originals and results: a directory shared by API and workers (filesystem), or an
    # S3-compatible bucket (s3), so that they share no volume. Credentials for S3 come from
    # the standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, web identity, pod
    # identity, instance metadata), never from a setting of ours.
    STORAGE_BACKEND: Literal["filesystem", "s3"] = "filesystem"
    STORAGE_DIR: Path | None = None  # filesystem: default <DATA_DIR>/storage
    S3_ENDPOINT_URL: str = ""  # empty = AWS; the address API and workers reach
    S3_PUBLIC_ENDPOINT_URL: str = ""  # the address browsers reach, for signed URLs; default: S3_ENDPOINT_URL
    S3_BUCKET: str = ""
    S3_REGION: str = "us-east-1"
    S3_PREFIX: str = ""  # keys become <prefix>/originals/..., <prefix>/results/...
    S3_FORCE_PATH_STYLE: bool | None = None  # default: path style with an endpoint, virtual hosts on AWS
    S3_CA_BUNDLE: Path | None = None  # PEM file to verify the endpoint's certificate with
    # GET /api/tasks/{id}/result: 302 to a signed URL (on), or the bytes through the API (off).
    S3_SIGNED_URLS: bool = True
    S3_SIGNED_URL_SECONDS: int = Field(300, ge=1, le=7 * 24 * 3600)
    S3_MAX_ATTEMPTS: int = Field(3, ge=1, le=20)  # per call, botocore's standard retry mode
    S3_CONNECT_TIMEOUT: float = Field(3.0, gt=0)
    QUEUE_NAME: str = "imgproc"
    # Redis Sentinel (automatic failover of the broker). With sentinels set, every Redis client
    # (Celery's broker connection, the rate-limit counters, readiness) asks them for the current
    # master of REDIS_SENTINEL_MASTER and follows it through a failover; BROKER_URL (redis://)
    # then gives only the user, password and database number, its host:port is not used.
    REDIS_SENTINELS: str = ""  # "host:port,host:port,..." (port default 26379); empty = no Sentinel
    REDIS_SENTINEL_MASTER: str = "mymaster"  # the name the sentinels monitor the master under
    REDIS_SENTINEL_PASSWORD: str = ""  # AUTH for the sentinels themselves; empty = none

    # --- HTTP ----------------------------------------------------------------------------
    HOST: str = "127.0.0.1"
    PORT: int = 8000
    # Base URL the worker uses to report outcomes (the API's ClusterIP Service in Kubernetes).
    API_INTERNAL_URL: str = ""  # default: http://127.0.0.1:<PORT>
    ROOT_PATH: str = ""
    CORS_ORIGINS: list[str] = Field(default_factory=list)
    CORS_ALLOW_CREDENTIALS: bool = True
    # Proxies whose X-Forwarded-For is believed (uvicorn's forwarded_allow_ips). Empty, the
    # default: no forwarding header is believed, every client is counted by its own address.
    # Never 127.0.0.1 by default: in embedded mode clients themselves connect on loopback, so
    # a loopback default let one client pose as any number of addresses.
    TRUSTED_PROXIES: list[str] = Field(default_factory=list)
    # Slow and hostile clients (app.server, app.api.middleware). The request line and headers
    # must arrive within HEADER_TIMEOUT_SECONDS (else 408 and the connection is closed) and
    # fit in MAX_HEADER_BYTES (else 431); nginx's client_header_timeout and
    # large_client_header_buffers, gunicorn's limit_request_field_size, are the same knobs.
    HEADER_TIMEOUT_SECONDS: float = Field(10.0, gt=0, le=300)
    MAX_HEADER_BYTES: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    # How long an idle kept-alive connection stays open (uvicorn's timeout_keep_alive). Behind a
    # proxy that pools connections to the API it must outlast the proxy's own idle timeout
    # (Traefik 90 s, ingress-nginx and cloud load balancers 60 s): when the server closes first,
    # a request the proxy sends on the closing connection is lost and, being a POST it may not
    # retry, its client gets 502. The chart sets it (api.keepAliveSeconds); 5 s is uvicorn's.
    KEEP_ALIVE_SECONDS: int = Field(5, ge=1, le=3600)
    # A request body must keep arriving at BODY_MIN_BYTES_PER_SECOND on average, after a grace of
    # BODY_GRACE_SECONDS from when the app starts reading it (Kestrel's MinRequestBodyDataRate,
    # Apache's mod_reqtimeout MinRate); a slower sender gets 408 and is dropped.
    BODY_MIN_BYTES_PER_SECOND: int = Field(1024, ge=1)
    BODY_GRACE_SECONDS: float = Field(10.0, gt=0, le=300)
    # Uploads in flight at once per API process (each holds up to about twice MAX_UPLOAD_BYTES in
    # memory while it is checked); beyond, 503 with Retry-After, so status, health and the webhook
    # keep answering.
    MAX_CONCURRENT_UPLOADS: int = Field(32, ge=1)
    # ...and per client address (after TRUSTED_PROXIES), so that one client sending slowly cannot
    # take every slot: beyond, 429 with Retry-After (a client behind a shared NAT address shares it).
    MAX_CONCURRENT_UPLOADS_PER_CLIENT: int = Field(8, ge=1)
    UPLOADS_BUSY_RETRY_AFTER_SECONDS: int = Field(2, ge=1)

    # --- identity ------------------------------------------------------------------------
    COOKIE_NAME: str = "imgproc_session"
    COOKIE_MAX_AGE: int = 60 * 60 * 24 * 365
    COOKIE_SECURE: bool | None = None  # default: on unless embedded

    # --- webhook (worker -> API) ---------------------------------------------------------
    WEBHOOK_SECRET: str = ""  # required outside embedded mode; embedded keeps one in DATA_DIR
    WEBHOOK_TOLERANCE_SECONDS: int = Field(300, ge=1)

    # --- limits --------------------------------------------------------------------------
    MAX_UPLOAD_BYTES: int = Field(20 * 1024 * 1024, ge=1)
    MAX_IMAGE_PIXELS: int = _DEFAULT_SPEC.max_pixels  # checked by Spec (output_spec)
    MAX_PENDING_TASKS_PER_USER: int = Field(100, ge=1)
    UPLOADS_PER_MINUTE_PER_USER: int = Field(120, ge=1)
    NEW_USERS_PER_MINUTE_PER_IP: int = Field(60, ge=1)

    # --- status long polls (?wait=) ------------------------------------------------------
    # A waiting status request is woken at once by an outcome this replica applies; outcomes
    # applied by another replica are seen by re-reading the task this often.
    STATUS_WAIT_RECHECK_SECONDS: float = Field(1.0, gt=0, le=30)

    # --- processing: the output (app.imaging.Spec holds the limits and the defaults) ------------
    OUTPUT_MAX_WIDTH: int = _DEFAULT_SPEC.max_width
    OUTPUT_MAX_HEIGHT: int = _DEFAULT_SPEC.max_height
    JPEG_QUALITY: int = _DEFAULT_SPEC.quality
    # The named outputs an upload can ask for, as JSON (app.imaging.presets documents the shape).
    # Unset: one default preset "web" made of the three settings above (today's single JPEG).
    PRESETS: str | None = None
    # Presets x formats one upload may ask for (each is an encode and a stored file).
    MAX_OUTPUTS_PER_TASK: int = Field(8, ge=1, le=64)
    # What JPEG outputs show under a transparent source, as "#rrggbb".
    JPEG_BACKGROUND: str = Field("#ffffff", pattern=r"^#[0-9a-fA-F]{6}$")
    # The ICC profile CMYK uploads without one of their own are read through (Debian's
    # libgs-common ships it; missing: Pillow's naive conversion, with a warning).
    CMYK_PROFILE_PATH: Path = Path(STANDARD_CMYK_PROFILE_PATH)
    # An animated preset keeps at most this many frames, and this many pixels over all frames.
    ANIMATION_MAX_FRAMES: int = Field(300, ge=1)
    ANIMATION_MAX_PIXELS: int = Field(150_000_000, ge=1)

    # --- Celery / reliability ------------------------------------------------------------
    WORKER_CONCURRENCY: int = Field(2, ge=1)
    TASK_SOFT_TIME_LIMIT: int = Field(60, ge=1)
    TASK_TIME_LIMIT: int = Field(90, ge=1)
    # Redis re-delivers an unacked message after this long; must exceed TASK_TIME_LIMIT.
    VISIBILITY_TIMEOUT: int = Field(3600, ge=1)
    # kombu's sweep that moves messages unacked for longer than VISIBILITY_TIMEOUT (a worker
    # SIGKILLed with its children) back to the queue: a Redis scan every INTERVAL x THROTTLE
    # seconds (kombu's defaults, 10 x 10). Lower both only together with the visibility timeout.
    UNACKED_RESTORE_INTERVAL: int = Field(10, ge=1)
    UNACKED_RESTORE_THROTTLE: int = Field(10, ge=1)
    # A task whose runs died with their worker this many times (OOM on one image, a crash
    # loop, lost reports) is failed instead of being run again.
    MAX_TASK_ATTEMPTS: int = Field(5, ge=1)
    # Tasks still processing after this long are re-enqueued by the API (app.tasks.requeue;
    # the names keep "reconcile", the settings users know). Longer than a run may take.
    RECONCILE_AFTER_SECONDS: int = Field(600, ge=1)
    # Tasks still pending (never claimed by a worker) this long after their message was sent,
    # while nothing waits in the queue, are re-enqueued sooner (or after RECONCILE_AFTER_SECONDS
    # if that is shorter): a worker claims a message within milliseconds of receiving it, so
    # such a message was lost. Celery drops the messages a worker had reserved when its broker
    # connection breaks, and Redis hands them out again only after VISIBILITY_TIMEOUT.
    RECONCILE_PENDING_AFTER_SECONDS: int = Field(60, ge=1)
    # A processing task whose worker wrote no heartbeat (worker.heartbeat, every 5 s) for this
    # long is handed back at once: the worker died with its run (Kubernetes' node lease is 40 s).
    WORKER_DEAD_AFTER_SECONDS: int = Field(30, ge=10)
    RECONCILE_INTERVAL_SECONDS: int = Field(10, ge=1)
    WORKER_HEARTBEAT_FILE: Path | None = None  # default: <DATA_DIR>/worker-heartbeat

    # --- Flower and the operator -----------------------------------------------------------
    FLOWER_PORT: int = 5555
    FLOWER_URL_PREFIX: str = "flower"
    FLOWER_BASIC_AUTH: str = ""  # "user:password"; empty = no auth (embedded only)
    OPERATOR_HEALTH_PORT: int = 8080
    OPERATOR_METRICS_PORT: int = 9100
    # Namespace whose WorkerAutoscalers the operator serves; default: the pod's own namespace.
    OPERATOR_NAMESPACE: str = ""

    # --- Prometheus metrics of the API and the worker (app.core.metrics_export) -----------------
    # The port `imgproc api` and `imgproc worker` serve /metrics on, apart from the API's routes
    # (so the ingress never exposes it). 0, the default: none. Off by default because API and
    # workers started side by side on one host (development, tests, Compose) would all claim
    # the same port; in Kubernetes every pod has its own and the chart sets it. Embedded mode
    # (SQLite) serves /metrics on the API's own port as well.
    METRICS_PORT: int = Field(0, ge=0, le=65535)
    METRICS_HOST: str = "0.0.0.0"  # a scraper reaches the pod's address, not its loopback
    # Where a served worker (or `imgproc run`) keeps its processes' metric files: one directory
    # per process tree is made below it, wiped at start. Default: the system's temp directory.
    METRICS_DIR: Path | None = None

    # --- OpenTelemetry tracing (app.core.tracing): the standard variables, without our prefix --------
    # Off unless a traces exporter or an OTLP endpoint is named. The SDK reads the rest of OTEL_*
    # itself (OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*).
    OTEL_SDK_DISABLED: bool = Field(False, validation_alias="OTEL_SDK_DISABLED")
    # otlp (OTLP over HTTP/protobuf), console (spans printed as JSON to stdout) or none.
    OTEL_TRACES_EXPORTER: Literal["", "otlp", "console", "none"] = Field("", validation_alias="OTEL_TRACES_EXPORTER")
    OTEL_EXPORTER_OTLP_ENDPOINT: str = Field("", validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: str = Field("", validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    # The image carries the HTTP exporter only (gRPC's would add grpcio, ~30 MB, for the same spans).
    OTEL_EXPORTER_OTLP_PROTOCOL: Literal["", "http/protobuf"] = Field(
        "", validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: Literal["", "http/protobuf"] = Field(
        "", validation_alias="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    )
    OTEL_SERVICE_NAME: str = Field("", validation_alias="OTEL_SERVICE_NAME")  # default: imgproc-<role>
    # Instrumentations left out, comma-separated (TRACING_INSTRUMENTATIONS), e.g. "sqlalchemy,redis":
    # their spans are most of a trace and of its cost (README, "Observe it").
    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: str = Field("", validation_alias="OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")

    LOG_LEVEL: str = "INFO"
    LOG_FORMAT: Literal["text", "json"] = "text"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def database_url(self) -> str:
        return self.DATABASE_URL or f"sqlite:///{self.DATA_DIR.resolve() / 'imgproc.sqlite3'}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def broker_url(self) -> str:
        # kombu's SQLAlchemy transport, tuned (app.core.embedded_broker).
        return self.BROKER_URL or f"imgproc-sqlite+sqlite:///{self.DATA_DIR.resolve() / 'broker.sqlite3'}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def redis_sentinels(self) -> list[tuple[str, int]]:
        """(host, port) of every sentinel; [] without Sentinel."""
        return [parse_host_port(item, 26379) for item in self.REDIS_SENTINELS.split(",") if item.strip()]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def storage_dir(self) -> Path:
        return (self.STORAGE_DIR or self.DATA_DIR / "storage").resolve()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def s3_prefix(self) -> str:
        prefix = self.S3_PREFIX.strip("/")
        return f"{prefix}/" if prefix else ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def s3_addressing_style(self) -> Literal["path", "virtual"]:
        path_style = bool(self.S3_ENDPOINT_URL) if self.S3_FORCE_PATH_STYLE is None else self.S3_FORCE_PATH_STYLE
        return "path" if path_style else "virtual"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tracing_exporter(self) -> Literal["otlp", "console"] | None:
        """The span exporter the OTEL_* variables ask for; None: tracing off (no SDK loaded)."""
        if self.OTEL_SDK_DISABLED or self.OTEL_TRACES_EXPORTER == "none":
            return None
        if self.OTEL_TRACES_EXPORTER:
            return self.OTEL_TRACES_EXPORTER
        return "otlp" if self.OTEL_EXPORTER_OTLP_ENDPOINT or self.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tracing_instrumentations(self) -> tuple[str, ...]:
        """The instrumentations tracing installs: all of TRACING_INSTRUMENTATIONS but the disabled."""
        disabled = {name.strip() for name in self.OTEL_PYTHON_DISABLED_INSTRUMENTATIONS.split(",") if name.strip()}
        if unknown := disabled - set(TRACING_INSTRUMENTATIONS):
            raise ValueError(
                f"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: unknown {', '.join(sorted(unknown))} "
                f"(the instrumentations: {', '.join(TRACING_INSTRUMENTATIONS)})"
            )
        return tuple(name for name in TRACING_INSTRUMENTATIONS if name not in disabled)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def embedded(self) -> bool:
        """True when running on SQLite with no servers: the one-command local mode."""
        return self.database_url.startswith("sqlite")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cookie_secure(self) -> bool:
        return (not self.embedded) if self.COOKIE_SECURE is None else self.COOKIE_SECURE

    @computed_field  # type: ignore[prop-decorator]
    @property
    def api_internal_url(self) -> str:
        return (self.API_INTERNAL_URL or f"http://127.0.0.1:{self.PORT}").rstrip("/")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def heartbeat_file(self) -> Path:
        return (self.WORKER_HEARTBEAT_FILE or self.DATA_DIR / "worker-heartbeat").resolve()

    @property
    def output_spec(self) -> Spec:
        """What the worker makes, from the settings' current values (a few field checks; no
        snapshot that a copy of the settings could leave behind). Validated when the settings are
        read, so a wrong value stops start-up."""
        return Spec(**{field: getattr(self, name) for name, field in _SPEC_SETTINGS.items()})

    @property
    def presets_configured(self) -> bool:
        """Whether IMGPROC_PRESETS names presets (unset or blank: the single default `web`)."""
        return bool((self.PRESETS or "").strip())

    @property
    def presets(self) -> tuple[Preset, ...]:
        """The configured presets (validated when the settings are read). Read per upload, report
        and task: the parse (JSON plus Pillow's feature checks) is cached on the string itself, so a
        copy of the settings with another value gets its own."""
        if not self.presets_configured:
            return (Preset.from_spec(self.output_spec),)
        return _parsed_presets(self.PRESETS)

    @property
    def jpeg_background(self) -> tuple[int, int, int]:
        value = self.JPEG_BACKGROUND
        return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))

    def webhook_secret(self) -> bytes:
        """The shared HMAC key. Embedded mode creates one in DATA_DIR on first use; elsewhere
        it must be configured (checked where it is needed: API and worker start-up, not
        `imgproc migrate`)."""
        if self.WEBHOOK_SECRET:
            return self.WEBHOOK_SECRET.encode()
        if not self.embedded:
            raise MissingWebhookSecret(
                "IMGPROC_WEBHOOK_SECRET must be set (at least 24 characters) when not in embedded mode."
            )
        return _local_secret(self.DATA_DIR.resolve() / "webhook-secret")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        self.tracing_instrumentations  # noqa: B018 - built to be validated
        try:
            self.output_spec  # noqa: B018 - built to be validated
        except ValueError as exc:
            message = str(exc)
            for name, field in _SPEC_SETTINGS.items():
                message = message.replace(f"Spec.{field}", f"IMGPROC_{name}")
            raise ValueError(message) from None
        try:
            presets = self.presets
        except PresetError as exc:
            raise ValueError(f"IMGPROC_PRESETS: {exc}") from None
        largest_default = output_count(preset for preset in presets if preset.default)
        if largest_default > self.MAX_OUTPUTS_PER_TASK:
            raise ValueError(
                f"IMGPROC_PRESETS: the default presets make {largest_default} outputs, more than "
                f"IMGPROC_MAX_OUTPUTS_PER_TASK ({self.MAX_OUTPUTS_PER_TASK})."
            )
        if "*" in self.CORS_ORIGINS and self.CORS_ALLOW_CREDENTIALS:
            raise ValueError(
                "IMGPROC_CORS_ORIGINS contains '*' while IMGPROC_CORS_ALLOW_CREDENTIALS is true: "
                "browsers would send cookies to every site. List the allowed origins explicitly."
            )
        if self.WEBHOOK_SECRET and len(self.WEBHOOK_SECRET) < 24:
            raise ValueError("IMGPROC_WEBHOOK_SECRET must be at least 24 characters long.")
        if self.VISIBILITY_TIMEOUT <= self.TASK_TIME_LIMIT:
            raise ValueError("IMGPROC_VISIBILITY_TIMEOUT must be longer than IMGPROC_TASK_TIME_LIMIT.")
        if self.STORAGE_BACKEND == "s3":
            if not self.S3_BUCKET:
                raise ValueError("IMGPROC_S3_BUCKET must be set when IMGPROC_STORAGE_BACKEND is s3.")
            for name in ("S3_ENDPOINT_URL", "S3_PUBLIC_ENDPOINT_URL"):
                url = getattr(self, name)
                if url and not url.startswith(("http://", "https://")):
                    raise ValueError(f"IMGPROC_{name} must be an http:// or https:// URL, got {url!r}.")
        if self.REDIS_SENTINELS:
            try:
                self.redis_sentinels  # noqa: B018 - parses every address
            except ValueError as exc:
                raise ValueError(f"IMGPROC_REDIS_SENTINELS: {exc}") from None
            if not self.broker_url.startswith("redis://"):
                raise ValueError(
                    "IMGPROC_REDIS_SENTINELS needs a redis:// IMGPROC_BROKER_URL (it gives the password and the "
                    "database; TLS to Sentinel is not supported)."
                )
            if not self.REDIS_SENTINEL_MASTER:
                raise ValueError("IMGPROC_REDIS_SENTINEL_MASTER must not be empty with IMGPROC_REDIS_SENTINELS.")
        if self.DATABASE_REPLICA_URL and not (
            self.DATABASE_REPLICA_URL.startswith("postgresql") and self.database_url.startswith("postgresql")
        ):
            raise ValueError("IMGPROC_DATABASE_REPLICA_URL needs PostgreSQL URLs for it and IMGPROC_DATABASE_URL.")
        if self.TASK_SOFT_TIME_LIMIT >= self.TASK_TIME_LIMIT:
            raise ValueError("IMGPROC_TASK_SOFT_TIME_LIMIT must be shorter than IMGPROC_TASK_TIME_LIMIT.")
        return self


_parsed_presets = lru_cache(maxsize=16)(parse_presets)


@lru_cache
def get_settings() -> Settings:
    return Settings()
