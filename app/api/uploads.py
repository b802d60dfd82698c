"""Reading one file field of a multipart upload straight into memory.

FastAPI's ``UploadFile`` goes through Starlette's form parser, which spools every file over 1 MiB
to a temporary file on disk, one thread-pool hop per received chunk, and the route then reads it
back: for a 4 MB photo that was about half of the API's CPU per upload once the image check had
become cheap. The body is bounded anyway (``RequestBodyGuard`` refuses it while it streams), so the
one field the service wants is kept in memory, fed from the request stream to python-multipart's
parser with no temporary file and no thread hop. Other fields are parsed and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

# Starlette's default for the form parser FastAPI used before. A part's head is bounded by
# python-multipart itself: at most 8 header lines of at most 4 KiB each.
MAX_PARTS = 1000

# What a request without the field got from FastAPI's validation, kept for old clients.
_MISSING = {"type": "missing", "msg": "Field required", "input": None}
_NOT_A_FILE = {"type": "value_error", "msg": "Value error, Expected UploadFile, received: <class 'str'>"}


# A text field kept beside the file is short (a list of preset names); more is refused.
MAX_TEXT_FIELD_BYTES = 1024


@dataclass
class UploadedFile:
    filename: str
    data: bytes
    too_large: bool = False  # more than the caller's limit arrived; ``data`` holds limit + 1 bytes
    fields: dict[str, str] = field(default_factory=dict)  # the text fields asked for that were sent


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    header_name: bytes = b""
    header_value: bytes = b""
    disposition: bytes = b""
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


class _FileFieldParser:
    def __init__(self, wanted: str, max_bytes: int, text_fields: tuple[str, ...]) -> None:
        self.wanted, self.max_bytes, self.text_fields = wanted, max_bytes, text_fields
        self.part = _Part()
        self.parts = 0
        self.found: UploadedFile | None = None
        self.found_a_plain_field = False
        self.texts: dict[str, str] = {}

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise HTTPException(400, f"Too many parts in the multipart body (the limit is {MAX_PARTS}).")
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.part.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.part.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.part.header_name.lower() == b"content-disposition":
            self.part.disposition = self.part.header_value
        self.part.header_name, self.part.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.disposition)
        if b"name" not in options:
            raise HTTPException(400, 'A part of the multipart body has no Content-Disposition "name".')
        self.part.name = _decode(options[b"name"])
        if b"filename" in options:
            self.part.filename = _decode(options[b"filename"])

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        if part.name in self.text_fields and part.filename is None:
            part.size += end - start
            if part.size > MAX_TEXT_FIELD_BYTES:
                raise HTTPException(422, f"The field {part.name!r} is longer than {MAX_TEXT_FIELD_BYTES} bytes.")
            part.chunks.append(data[start:end])
            return
        if part.name != self.wanted or part.size > self.max_bytes:
            return  # another field, or already over the limit: not kept
        chunk = data[start : min(end, start + self.max_bytes + 1 - part.size)]
        part.chunks.append(chunk)
        part.size += len(chunk)

    def on_part_end(self) -> None:
        part = self.part
        if part.name in self.text_fields and part.filename is None:
            self.texts[part.name] = _decode(b"".join(part.chunks))  # the last one wins
            return
        if part.name != self.wanted:
            return
        if part.filename is None:
            self.found_a_plain_field = True
            return
        data = b"".join(part.chunks)
        self.found = UploadedFile(part.filename, data, too_large=len(data) > self.max_bytes)  # the last one wins


async def read_file_field(
    request: Request, name: str, *, max_bytes: int, text_fields: tuple[str, ...] = ()
) -> UploadedFile:
    """The file sent as field ``name`` of a multipart/form-data body, with the ``text_fields``
    that were sent beside it (each at most MAX_TEXT_FIELD_BYTES, else 422).

    400 for a body that is not valid multipart; 422 (FastAPI's validation shape) when the field is
    missing or is not a file. At most ``max_bytes + 1`` bytes of the file are kept.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    parser = _FileFieldParser(name, max_bytes, text_fields)
    if content_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise HTTPException(400, "Missing boundary in multipart.")
        callbacks = {
            "on_part_begin": parser.on_part_begin,
            "on_part_data": parser.on_part_data,
            "on_part_end": parser.on_part_end,
            "on_header_field": parser.on_header_field,
            "on_header_value": parser.on_header_value,
            "on_header_end": parser.on_header_end,
            "on_headers_finished": parser.on_headers_finished,
        }
        try:
            multipart = MultipartParser(boundary, callbacks)
            async for chunk in request.stream():
                multipart.write(chunk)
            multipart.finalize()
        except MultipartParseError as exc:
            if str(exc).startswith("Maximum header"):  # its message names the limit: count or size
                raise HTTPException(400, f"A part's headers in the multipart body are too large ({exc}).") from exc
            raise HTTPException(400, "Invalid multipart data.") from exc
        except FormParserError as exc:
            raise HTTPException(400, "Invalid multipart data.") from exc
        except ClientDisconnect as exc:  # nobody will read the answer; no half upload is kept
            raise HTTPException(400, "The upload was interrupted.") from exc
    if parser.found is None:
        error = _NOT_A_FILE if parser.found_a_plain_field else _MISSING
        raise RequestValidationError([{**error, "loc": ("body", name)}])
    parser.found.fields = parser.texts
    return parser.found
