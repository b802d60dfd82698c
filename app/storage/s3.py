"""The S3 backend: an S3-compatible bucket (AWS, SeaweedFS, versitygw, ...), so that API and
workers share no volume. An unreachable or refusing store is StorageUnavailable."""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from app.core.config import Settings
from app.storage import CHUNK, StorageUnavailable, StoredObject, check_key, content_type_for


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Storage:
    """An S3 bucket through boto3. One client per process, made on first use and again after a
    fork (Celery's prefork pool), shared by the process's threads (boto3 clients are thread-safe).
    Credentials come from the standard AWS chain only (env, shared files, web identity, pod
    identity, IMDS). Signed URLs are made by a second client set up for the public endpoint."""

    backend = "s3"

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.S3_BUCKET
        self.prefix = settings.s3_prefix
        self.endpoint_url = settings.S3_ENDPOINT_URL or None
        self.public_endpoint_url = settings.S3_PUBLIC_ENDPOINT_URL or self.endpoint_url
        self.region = settings.S3_REGION
        self.addressing_style = settings.s3_addressing_style
        # Checked here, not in Settings: only the processes that use storage mount the bundle.
        if settings.S3_CA_BUNDLE is not None and not settings.S3_CA_BUNDLE.is_file():
            raise ValueError(f"IMGPROC_S3_CA_BUNDLE names no file: {settings.S3_CA_BUNDLE}")
        self.ca_bundle = str(settings.S3_CA_BUNDLE) if settings.S3_CA_BUNDLE else None
        self.signed_urls = settings.S3_SIGNED_URLS
        self.signed_url_seconds = settings.S3_SIGNED_URL_SECONDS
        self.max_attempts = settings.S3_MAX_ATTEMPTS
        self.connect_timeout = settings.S3_CONNECT_TIMEOUT
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._clients: tuple[Any, Any] | None = None

    # --- clients -----------------------------------------------------------------------
    def _make_client(self, endpoint_url: str | None) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",  # boto3 still signs URLs with SigV2 otherwise; S3-compatibles refuse those
            s3={"addressing_style": self.addressing_style},
            retries={"mode": "standard", "max_attempts": self.max_attempts},
            # boto3 >= 1.36 adds CRC32 checksums by default, which several S3-compatibles reject
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=self.connect_timeout,
            read_timeout=30,
            max_pool_connections=20,
        )
        return boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=self.region, verify=self.ca_bundle, config=config
        )

    def _pair(self) -> tuple[Any, Any]:
        pid = os.getpid()
        if self._pid != pid or self._clients is None:
            with self._lock:
                if self._pid != pid or self._clients is None:
                    client = self._make_client(self.endpoint_url)
                    signer = (
                        client
                        if self.public_endpoint_url == self.endpoint_url
                        else self._make_client(self.public_endpoint_url)
                    )
                    self._clients, self._pid = (client, signer), pid
        return self._clients

    @property
    def client(self) -> Any:
        return self._pair()[0]

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    # --- errors ------------------------------------------------------------------------
    def _call(self, what: str, key: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise FileNotFoundError(key) from exc
            raise StorageUnavailable(f"{what} {key}: {code or exc}") from exc
        except (BotoCoreError, OSError) as exc:
            raise StorageUnavailable(f"{what} {key}: {type(exc).__name__}: {exc}") from exc

    # --- the interface -----------------------------------------------------------------
    def write(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        keep_cached: bool = True,
    ) -> None:
        """A PUT (or a multipart upload above 8 MiB) is atomic: the object appears whole, or
        not at all (s3transfer aborts a failed multipart upload). ``keep_cached`` has no effect:
        nothing of an object stays in this machine's page cache."""
        name = self.object_key(key)
        if isinstance(data, bytes | bytearray | memoryview):
            self._call(
                "put",
                key,
                self.client.put_object,
                Bucket=self.bucket,
                Key=name,
                Body=bytes(data),
                ContentType=content_type,
            )
            return
        from boto3.s3.transfer import TransferConfig

        self._call(
            "upload",
            key,
            self.client.upload_fileobj,
            Fileobj=data,
            Bucket=self.bucket,
            Key=name,
            ExtraArgs={"ContentType": content_type},
            Config=TransferConfig(multipart_threshold=8 * CHUNK, multipart_chunksize=8 * CHUNK, use_threads=False),
        )

    def read(self, key: str) -> bytes:
        def get() -> bytes:
            return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"].read()

        return self._call("get", key, get)

    def stat(self, key: str) -> StoredObject | None:
        try:
            head = self._call("head", key, self.client.head_object, Bucket=self.bucket, Key=self.object_key(key))
        except FileNotFoundError:
            return None
        return StoredObject(size=int(head["ContentLength"]), version=str(head.get("ETag", "")).strip('"'))

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        body = self._call("get", key, self.client.get_object, Bucket=self.bucket, Key=self.object_key(key))["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def local_path(self, key: str) -> Path | None:
        return None

    def signed_url(self, key: str, *, filename: str, cache_seconds: int) -> str | None:
        """No I/O: signing is local. The URL names the response headers the store must send
        (type, download name, private caching no longer than the URL lives)."""
        if not self.signed_urls:
            return None
        signer = self._pair()[1]
        return signer.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.object_key(key),
                "ResponseContentType": content_type_for(key),
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseCacheControl": f"private, max-age={min(cache_seconds, self.signed_url_seconds)}",
            },
            ExpiresIn=self.signed_url_seconds,
        )

    def public_origin(self) -> str:
        """Where the signed URLs point, worked out the way botocore builds them (no signing, no
        I/O): the public endpoint (or AWS's regional one), with the bucket as a virtual host when
        that addressing is on and the bucket can be a host name (no dots; not on an IP address)."""
        if not self.signed_urls:
            return ""
        endpoint = urlsplit(self._pair()[1].meta.endpoint_url)
        host = endpoint.netloc
        if self.addressing_style == "virtual" and "." not in self.bucket and not _is_ip(endpoint.hostname or ""):
            host = f"{self.bucket}.{host}"
        return f"{endpoint.scheme}://{host}"

    def delete(self, key: str) -> None:
        self._call("delete", key, self.client.delete_object, Bucket=self.bucket, Key=self.object_key(key))

    def check(self) -> None:
        self._call("head bucket", self.bucket, self.client.head_bucket, Bucket=self.bucket)

    def list_keys(self, prefix: str) -> Iterator[str]:
        def pages() -> list[list[str]]:
            paginator = self.client.get_paginator("list_objects_v2")
            return [
                [obj["Key"][len(self.prefix) :] for obj in page.get("Contents", [])]
                for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
            ]

        for page in self._call("list", prefix, pages):
            yield from page
