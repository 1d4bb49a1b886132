"""Reading an OTLP protobuf request whose strings are not all valid UTF-8.

Protobuf's parser refuses a whole request for one string field holding bytes that are not
UTF-8 (an instrumentation that cut a multi-byte character in half while truncating an
attribute), and with it the other 511 spans of an exporter's batch. Such a request is read
again here with the same message types in which every string field is declared ``bytes``
(the two share their wire format), the bad bytes are replaced by U+FFFD, and the request is
encoded again and parsed with the real types: the spans are stored, and the reply's
``partial_success`` says how many strings were mended (as for a lone surrogate in JSON).

Only the failing path pays for this: a valid request is parsed once, by protobuf alone.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor, FileDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_STRING = FieldDescriptor.TYPE_STRING
_BYTES = FieldDescriptor.TYPE_BYTES
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


class TooManyValues(Exception):
    """The request holds more entries than mending may walk (``mend``'s ``limit``)."""


def _files(file: FileDescriptor, seen: dict[str, FileDescriptor]) -> None:
    """``file`` and what it imports, dependencies first."""
    for dependency in file.dependencies:
        if dependency.name not in seen:
            _files(dependency, seen)
    seen[file.name] = file


@cache
def _lenient_request() -> tuple[type[Message], frozenset[str]]:
    """``ExportTraceServiceRequest`` with every string field declared ``bytes`` (in a pool of
    its own), and the full names of those fields."""
    files: dict[str, FileDescriptor] = {}
    _files(ExportTraceServiceRequest.DESCRIPTOR.file, files)
    pool = descriptor_pool.DescriptorPool()
    strings: set[str] = set()
    for file in files.values():
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        _strings_to_bytes(proto.package, proto.message_type, strings)
        pool.Add(proto)
    descriptor = pool.FindMessageTypeByName(ExportTraceServiceRequest.DESCRIPTOR.full_name)
    return message_factory.GetMessageClass(descriptor), frozenset(strings)


def _strings_to_bytes(scope: str, messages: Any, strings: set[str]) -> None:
    for message in messages:
        name = f"{scope}.{message.name}"
        for field in message.field:
            if field.type == _STRING:
                field.type = _BYTES
                strings.add(f"{name}.{field.name}")
        _strings_to_bytes(name, message.nested_type, strings)


def mend(body: bytes, limit: int) -> tuple[ExportTraceServiceRequest, int]:
    """The request in ``body`` with the invalid UTF-8 of its strings replaced by U+FFFD, and
    how many strings were mended. ``DecodeError`` when the body is no such request even with
    strings read as bytes; ``TooManyValues`` when it holds more than ``limit`` entries of
    lists of messages (spans, attributes, events, ...: what the route counts against its item
    limit, and a bound on the Python work, each message being visited once)."""
    lenient, strings = _lenient_request()
    message = lenient()
    message.ParseFromString(body)  # DecodeError: malformed beyond its strings
    counts = [0, 0]  # (strings mended, values visited)
    _mend(message, strings, counts, limit)
    mended = message.SerializeToString()
    del message  # one decoded request in memory at a time (each costs many times its bytes)
    request = ExportTraceServiceRequest()
    request.ParseFromString(mended)
    return request, counts[0]


def _mend(message: Message, strings: frozenset[str], counts: list[int], limit: int) -> None:
    for field, value in message.ListFields():
        if field.type == _MESSAGE:
            if not _repeated(field):
                _mend(value, strings, counts, limit)
                continue
            # Entries of lists only, as the route counts items: counting every message (a
            # KeyValue and its AnyValue, a span's Status) refused with 413 a batch of 600,000
            # attributes holding one bad string, which taken whole was under the limit.
            counts[1] += len(value)
            if counts[1] > limit:
                raise TooManyValues
            for item in value:
                _mend(item, strings, counts, limit)
        elif field.full_name in strings:
            if _repeated(field):
                for i, raw in enumerate(value):
                    value[i] = _mended(raw, counts)
            else:
                setattr(message, field.name, _mended(value, counts))


def _repeated(field: FieldDescriptor) -> bool:
    is_repeated = getattr(field, "is_repeated", None)  # protobuf 7 has no ``label``
    if is_repeated is not None:
        return bool(is_repeated)
    return bool(getattr(field, "label", None) == FieldDescriptor.LABEL_REPEATED)


def _mended(raw: bytes, counts: list[int]) -> bytes:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        counts[0] += 1
        return raw.decode("utf-8", "replace").encode("utf-8")
    return raw
