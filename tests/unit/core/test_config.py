from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import MissingWebhookSecret, Settings


def test_embedded_defaults_need_no_servers(tmp_path):
    settings = Settings(DATA_DIR=tmp_path)
    assert settings.embedded
    assert settings.database_url.startswith("sqlite:///")
    assert settings.broker_url.startswith("imgproc-sqlite+sqlite:///")
    assert settings.cookie_secure is False


def test_wildcard_cors_with_credentials_refuses_to_start():
    with pytest.raises(ValidationError, match="contains '\\*'"):
        Settings(CORS_ORIGINS=["*"], CORS_ALLOW_CREDENTIALS=True)


def test_production_mode_requires_a_webhook_secret_where_it_is_used():
    settings = Settings(DATABASE_URL="postgresql+psycopg2://u@h/db")  # enough for `imgproc migrate`
    with pytest.raises(MissingWebhookSecret, match="WEBHOOK_SECRET"):
        settings.webhook_secret()
    with pytest.raises(ValidationError, match="at least 24"):
        Settings(DATABASE_URL="postgresql+psycopg2://u@h/db", WEBHOOK_SECRET="short")


def test_visibility_timeout_must_outlast_the_task_time_limit():
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT"):
        Settings(TASK_TIME_LIMIT=100, VISIBILITY_TIMEOUT=50)


def test_embedded_webhook_secret_is_created_once_and_kept(tmp_path):
    first = Settings(DATA_DIR=tmp_path).webhook_secret()
    assert len(first) >= 32
    assert Settings(DATA_DIR=tmp_path).webhook_secret() == first
    assert (tmp_path / "webhook-secret").stat().st_mode & 0o077 == 0


def test_celery_reliability_settings():
    from app.core.celery_app import celery_config

    settings = Settings(BROKER_URL="redis://localhost:6379/0")
    conf = celery_config(settings)
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_soft_time_limit"] < conf["task_time_limit"]
    assert conf["broker_transport_options"]["visibility_timeout"] > conf["task_time_limit"]


def test_s3_settings_are_checked_at_start_up():
    with pytest.raises(ValueError, match="IMGPROC_S3_BUCKET must be set"):
        Settings(STORAGE_BACKEND="s3")
    with pytest.raises(ValueError, match="http:// or https://"):
        Settings(STORAGE_BACKEND="s3", S3_BUCKET="b", S3_ENDPOINT_URL="minio:9000")
    # Only processes that use storage mount the bundle (not migrations, Flower, the operator).
    Settings(STORAGE_BACKEND="s3", S3_BUCKET="b", S3_CA_BUNDLE="/nonexistent/ca.pem")
    assert Settings(STORAGE_BACKEND="s3", S3_BUCKET="b").s3_addressing_style == "virtual"  # AWS
    assert Settings(STORAGE_BACKEND="s3", S3_BUCKET="b", S3_ENDPOINT_URL="http://x").s3_addressing_style == "path"
    assert Settings(S3_ENDPOINT_URL="http://x", S3_FORCE_PATH_STYLE="false").s3_addressing_style == "virtual"
    assert Settings(S3_PREFIX="/a/b/").s3_prefix == "a/b/" and Settings().s3_prefix == ""
    assert Settings().STORAGE_BACKEND == "filesystem"


def test_a_read_replica_needs_postgresql_on_both_sides(tmp_path):
    with pytest.raises(ValidationError, match="DATABASE_REPLICA_URL needs PostgreSQL"):
        Settings(DATA_DIR=tmp_path, DATABASE_REPLICA_URL="postgresql+psycopg2://u@replica/db")  # primary: SQLite
    settings = Settings(
        DATABASE_URL="postgresql+psycopg2://u@primary/db", DATABASE_REPLICA_URL="postgresql+psycopg2://u@replica/db"
    )
    assert (settings.DATABASE_REPLICA_MAX_LAG_SECONDS, settings.DATABASE_REPLICA_CHECK_SECONDS) == (5.0, 1.0)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("JPEG_QUALITY", 96, "IMGPROC_JPEG_QUALITY must be 1..95"),
        ("OUTPUT_MAX_WIDTH", 0, "IMGPROC_OUTPUT_MAX_WIDTH must be a positive int"),
        ("MAX_IMAGE_PIXELS", 0, "IMGPROC_MAX_IMAGE_PIXELS must be a positive int"),
    ],
)
def test_an_output_setting_out_of_the_specs_limits_stops_start_up_naming_the_setting(setting, value, message):
    with pytest.raises(ValidationError, match=message):
        Settings(**{setting: value})


def test_the_output_spec_follows_the_settings_it_is_built_from():
    settings = Settings(JPEG_QUALITY=70, OUTPUT_MAX_WIDTH=320)
    assert (settings.output_spec.quality, settings.output_spec.max_width) == (70, 320)
    assert settings.model_copy(update={"JPEG_QUALITY": 50}).output_spec.quality == 50
