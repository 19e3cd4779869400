"""A ``multipart/form-data`` body read as it arrives: small fields whole, file contents piece by piece.

Starlette's ``request.form()`` reads the whole body (spooling files to disk) before the handler sees any
of it, so a handler cannot stop at a size limit or store a file as it comes. Here the body is fed to
python-multipart's streaming parser chunk by chunk, and each chunk's parts come out at once: a file's bytes
are handed on (and may be stored) before the next chunk is read from the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from respd.errors import InvalidRequest

MAX_FIELD_BYTES = 64 * 1024  # a form field (not a file): purpose, expires_after[...]
MAX_PARTS = 64


@dataclass(frozen=True, slots=True)
class Field:
    """A whole form field."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class FileStart:
    """A file part begins; its bytes follow as :class:`FileData`, then :class:`FileEnd`."""

    name: str
    filename: str
    content_type: str


@dataclass(frozen=True, slots=True)
class FileData:
    data: bytes


@dataclass(frozen=True, slots=True)
class FileEnd:
    pass


Part = Field | FileStart | FileData | FileEnd


def _decode(raw: bytes) -> str:
    # header parameters come as bytes taken for latin-1; clients send UTF-8 file names
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Collector:
    """python-multipart's callbacks, turned into a list of :data:`Part` s per chunk fed."""

    def __init__(self, file_fields: frozenset[str]) -> None:
        self.file_fields = file_fields
        self.out: list[Part] = []
        self.parts = 0
        self._name = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._field: str | None = None  # the name of the field being read (None: a file is)
        self._data = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {"on_part_begin": self.part_begin, "on_part_data": self.part_data, "on_part_end": self.part_end,
                "on_header_field": self.header_field, "on_header_value": self.header_value,
                "on_header_end": self.header_end, "on_headers_finished": self.headers_finished}  # fmt: skip

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InvalidRequest(f"Too many parts in the multipart body (at most {MAX_PARTS}).")
        self._headers, self._data = {}, bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._name.lower()] = self._value
        self._name = self._value = b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        if b"name" not in options:
            raise InvalidRequest('Invalid multipart body: a part\'s Content-Disposition has no "name".')
        name = _decode(options[b"name"])
        if b"filename" in options or name in self.file_fields:
            content_type = _decode(self._headers.get(b"content-type", b"")).strip()
            self.out.append(FileStart(name, _decode(options.get(b"filename", b"")), content_type))
            self._field = None
        else:
            self._field = name

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._field is None:
            self.out.append(FileData(data[start:end]))
            return
        self._data += data[start:end]
        if len(self._data) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"The form field '{self._field}' is too long.", param=self._field)

    def part_end(self) -> None:
        if self._field is None:
            self.out.append(FileEnd())
        else:
            self.out.append(Field(self._field, _decode(bytes(self._data))))

    def take(self) -> list[Part]:
        """The parts made since the last take, consecutive file bytes joined."""
        out: list[Part] = []
        for part in self.out:
            if isinstance(part, FileData) and out and isinstance(out[-1], FileData):
                out[-1] = FileData(out[-1].data + part.data)
            else:
                out.append(part)
        self.out = []
        return out


def _boundary(request: Request) -> bytes:
    ctype, options = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise InvalidRequest(
            "Expected a multipart/form-data body (Content-Type: multipart/form-data; boundary=...).",
            code="invalid_content_type",
        )
    return options[b"boundary"]


async def read_parts(request: Request, file_fields: frozenset[str] = frozenset({"file"})) -> AsyncIterator[Part]:
    """The parts of ``request``'s multipart body, in order, as the body arrives.

    A part with a file name, or named in ``file_fields``, is a file; any other part is a field of at most
    :data:`MAX_FIELD_BYTES`. A body that is not multipart, or is malformed, is a 400.
    """
    collector = _Collector(file_fields)
    parser = MultipartParser(_boundary(request), collector.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            for part in collector.take():
                yield part
        parser.finalize()
    except FormParserError as exc:
        raise InvalidRequest(f"Invalid multipart body: {exc}.") from None
    for part in collector.take():
        yield part
