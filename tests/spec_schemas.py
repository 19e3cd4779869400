"""Validate JSON that respd returns against the two authoritative OpenAPI specs.

API
* ``validate_openai(schema_name, instance)``: valid under ``components.schemas[schema_name]`` of the OpenAI
  spec (``openai-openapi.yml``), e.g. ``"Response"``, ``"ResponseStreamEvent"``, ``"ErrorResponse"``,
  ``"ResponseItemList"``.
* ``validate_openresponses(schema_name, instance)``: the same for the Open Responses spec
  (``openresponses-openapi.json``), e.g. ``"ResponseResource"``, ``"ItemField"``.
* ``validate_openresponses_event(event)``: one of the Open Responses stream events (that spec has no
  component for the union; it is the ``text/event-stream`` schema of ``POST /responses``).
* ``openai_event_types()`` / ``openresponses_event_types()``: every ``type`` value the stream-event
  variants allow.
* ``validator(spec, schema_name)``, ``schemas(spec)``, ``openai_spec()``, ``openresponses_spec()`` for
  anything else (``spec`` is ``"openai"`` or ``"openresponses"``).

The ``validate_*`` functions raise ``AssertionError`` with the path in the instance (``$.output[0].content[0]``),
jsonschema's message, the union variants it went through (``ResponseOutputItemDoneEvent > OutputMessage >
OutputTextContent``), the schema path and the offending value. The error is chosen like
``jsonschema.exceptions.best_match``, except that an ``anyOf``/``oneOf`` whose variants are told apart by a
``type`` property is explained through the single variant of the instance's kind.

Where the specs live: ``$RESPD_SPEC_DIR`` if set, else ``tests/specs/`` in this repository (copies of the
published specs, with their sources and licences: see its README), so a fresh clone needs nothing else.

Loading: the OpenAI spec is ~3 MB of YAML (well over a second to parse, even with libyaml's CSafeLoader),
so the parsed document is cached as JSON under ``$RESPD_TEST_CACHE_DIR`` (default
``$XDG_CACHE_HOME/respd-tests`` or ``~/.cache/respd-tests``), in a file named by the sha256 of the spec's
bytes: a warm load is a hash plus a JSON parse (~35 ms). The write is atomic; an unwritable cache
directory only costs speed. The Open Responses spec is JSON already and is parsed directly.
Everything (documents, registries, validators per schema name) is cached per process.

How the OpenAPI 3.1 documents are read as JSON Schema (Draft 2020-12, the 3.1 dialect):

* The whole document is one resource of a ``referencing.Registry``, under a private URI, and each
  validator's root schema is ``{"$ref": "<uri>#/components/schemas/<name>"}``, so every
  ``"#/components/schemas/X"`` ref inside resolves within that document. Refs resolve lazily, as the
  instance is walked, so recursive schemas are fine. Every ``$ref`` in both documents resolves (the tests
  check it); were one broken, ``validate_*`` would fail with an ``AssertionError`` saying so.
* OpenAPI-only keywords (``discriminator``, ``example``, ``x-*`` extensions, ``nullable``, ...) are
  unknown to Draft 2020-12 and ignored. ``nullable: true`` (an OpenAPI 3.0 keyword) is used only by
  schemas outside what Response, ResponseStreamEvent, ErrorResponse and ResponseItemList reach; those
  spell nullability as ``anyOf: [..., {type: "null"}]``, which is honoured.
* ``format`` (``uri``, ``unixtime``, ...) is annotation only: no format checker is attached.
* Fixed on load: ``CompoundFilter``/``BetaCompoundFilter`` nest themselves with Draft 2019-09's
  ``$recursiveAnchor``/``{"$recursiveRef": "#"}``, which 2020-12 ignores (the ref would match anything and
  the ``oneOf`` around it would reject every valid filter); it is rewritten to a ``$ref`` to the schema.
* YAML 1.1 timestamps are read as plain strings (the OpenAI spec has an unquoted date in an ``example``),
  so the parsed document is pure JSON and a cached copy equals a fresh parse. The stdlib ``json`` module
  is used, not orjson: the spec holds an integer beyond 64 bits (``minimum: -9223372036854776000``).
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, relevance
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _loads(data: bytes) -> Any:
    return json.loads(data)


OPENAI_SPEC = "openai-openapi.yml"
OPENRESPONSES_SPEC = "openresponses-openapi.json"

_OPENAI_URI = "urn:respd-tests:openai-openapi"
_OPENRESPONSES_URI = "urn:respd-tests:openresponses-openapi"

# Bump when the cached representation changes (e.g. how YAML is read).
_CACHE_FORMAT = "2"


def spec_dir() -> Path:
    """The directory holding both spec files."""
    override = os.environ.get("RESPD_SPEC_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "specs"


def cache_dir() -> Path:
    override = os.environ.get("RESPD_TEST_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "respd-tests"


# --- loading ---------------------------------------------------------------------------------------

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe YAML loader (libyaml when available) that keeps timestamps as strings (JSON has no dates)."""


def _timestamp_as_str(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_SpecLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_str)


def _parse(path: Path, raw: bytes) -> Any:
    doc = _loads(raw) if path.suffix == ".json" else yaml.load(raw, Loader=_SpecLoader)
    if isinstance(doc, dict):
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            _fix_recursive_refs(schema, name)
    return doc


def _fix_recursive_refs(node: Any, name: str) -> None:
    """Rewrite Draft 2019-09 ``{"$recursiveRef": "#"}`` to a ``$ref`` to the enclosing component schema.

    The OpenAI spec's ``CompoundFilter``/``BetaCompoundFilter`` (file_search filters) nest themselves via
    ``$recursiveAnchor``/``$recursiveRef: "#"``. Draft 2020-12 does not know these keywords, so the ref
    would be ignored and match anything, making the ``oneOf`` around it fail for every valid filter; and
    "#" of the whole OpenAPI document is meaningless anyway. The intended target is the schema itself.
    """
    if isinstance(node, dict):
        if node.get("$recursiveRef") == "#":
            del node["$recursiveRef"]
            node["$ref"] = "#/components/schemas/" + _escape(name)
        node.pop("$recursiveAnchor", None)
        for value in node.values():
            _fix_recursive_refs(value, name)
    elif isinstance(node, list):
        for value in node:
            _fix_recursive_refs(value, name)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _load_document(filename: str) -> dict[str, Any]:
    """The parsed spec, from the cache when a copy for these exact bytes is there."""
    path = spec_dir() / filename
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"spec file {path} not found; set RESPD_SPEC_DIR to the directory holding {filename}"
        ) from exc
    if path.suffix == ".json":  # already JSON: parsing is as fast as reading a cache would be
        doc = _parse(path, raw)
    else:
        digest = hashlib.sha256(raw).hexdigest()
        cached = cache_dir() / f"{path.stem}-{digest[:32]}-v{_CACHE_FORMAT}.json"
        doc = None
        try:
            doc = _loads(cached.read_bytes())
        except (OSError, ValueError):
            doc = None
        if doc is None:
            doc = _parse(path, raw)
            _write_atomically(cached, _dumps(doc))
    if not isinstance(doc, dict) or "components" not in doc:
        raise ValueError(f"{path} is not an OpenAPI document")
    return doc


def _write_atomically(target: Path, data: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass  # no cache this time; correctness does not depend on it


@functools.cache
def openai_spec() -> dict[str, Any]:
    """The parsed OpenAI OpenAPI document (cached for the process)."""
    return _load_document(OPENAI_SPEC)


@functools.cache
def openresponses_spec() -> dict[str, Any]:
    """The parsed Open Responses OpenAPI document (cached for the process)."""
    return _load_document(OPENRESPONSES_SPEC)


_SPECS = {
    "openai": (openai_spec, _OPENAI_URI),
    "openresponses": (openresponses_spec, _OPENRESPONSES_URI),
}


@functools.cache
def _registry(spec: str) -> Registry[Any]:
    load, uri = _SPECS[spec]
    resource: Resource[Any] = DRAFT202012.create_resource(load())
    registry: Registry[Any] = Registry().with_resource(uri, resource)
    return registry


def schemas(spec: str) -> dict[str, Any]:
    """``components.schemas`` of ``spec`` ("openai" or "openresponses")."""
    load, _ = _SPECS[spec]
    result: dict[str, Any] = load()["components"]["schemas"]
    return result


@functools.cache
def _validator_at(spec: str, pointer: str) -> Draft202012Validator:
    _, uri = _SPECS[spec]
    root = {"$ref": f"{uri}#{pointer}"}
    return Draft202012Validator(root, registry=_registry(spec))  # no format_checker: format is annotation only


def validator(spec: str, schema_name: str) -> Draft202012Validator:
    """A (cached) Draft 2020-12 validator for ``components.schemas[schema_name]`` of ``spec``."""
    if schema_name not in schemas(spec):
        raise KeyError(f"the {spec} spec has no schema {schema_name!r} under components.schemas")
    return _validator_at(spec, "/components/schemas/" + _escape(schema_name))


# Open Responses defines no component for "any stream event": the union is the SSE schema of POST /responses.
_OPENRESPONSES_EVENT_POINTER = "/paths/~1responses/post/responses/200/content/text~1event-stream/schema"


# --- validating ------------------------------------------------------------------------------------


def _path(error: ValidationError) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return "$" + parts


def _shorten(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _summary(instance: Any) -> str:
    try:
        text = json.dumps(instance, default=repr)
    except (TypeError, ValueError):
        text = repr(instance)
    return _shorten(text)


def _branches(error: ValidationError) -> dict[Any, list[ValidationError]]:
    """The context errors of an ``anyOf``/``oneOf`` failure, grouped by the variant they came from."""
    groups: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        groups.setdefault(sub.relative_schema_path[0], []).append(sub)
    return groups


def _wrong_kind(errors: list[ValidationError]) -> bool:
    """Whether a union variant failed because the instance is not of its kind at all: another JSON type,
    or another ``type`` discriminator value (or a nested union none of whose variants is of its kind)."""
    for e in errors:
        rel = tuple(e.relative_path)
        if rel == () and e.validator == "type":
            return True
        if rel == ("type",) and e.validator in ("enum", "const", "type"):
            return True
        if (
            rel == ()
            and e.validator in ("anyOf", "oneOf")
            and e.context
            and all(_wrong_kind(group) for group in _branches(e).values())
        ):
            return True
    return False


def _variant_name(union: ValidationError, index: Any) -> str:
    try:
        variant = union.schema[union.validator][index]  # type: ignore[index,unused-ignore]
    except (KeyError, IndexError, TypeError):
        return f"#{index}"
    if isinstance(variant, dict):
        if "$ref" in variant:
            return str(variant["$ref"]).rsplit("/", 1)[-1]
        if "title" in variant:
            return str(variant["title"])
    return f"{union.validator}[{index}]"


def _best_error(errors: Iterator[ValidationError]) -> tuple[ValidationError | None, list[str]]:
    """Like ``jsonschema.exceptions.best_match``, but a union (``anyOf``/``oneOf``) whose variants are told
    apart by their ``type`` is explained through the one variant of the instance's kind, so a message
    says what is wrong with, say, an ``output_text`` part rather than "not valid under any of the given
    schemas". Also returns the names of the variants it went through."""
    best = max(errors, key=relevance, default=None)
    via: list[str] = []
    while best is not None and best.context:
        if best.validator in ("anyOf", "oneOf"):
            groups = _branches(best)
            plausible = [index for index, group in groups.items() if not _wrong_kind(group)]
            if len(plausible) == 1:
                via.append(_variant_name(best, plausible[0]))
                best = max(groups[plausible[0]], key=relevance)
                continue
            if not plausible:
                break  # no variant is of the instance's kind: the union error itself says it best
        # jsonschema's own descent step
        smallest = heapq.nsmallest(2, best.context, key=relevance)
        if len(smallest) == 2 and relevance(smallest[0]) == relevance(smallest[1]):
            break
        best = smallest[0]
    return best, via


def _validate(spec: str, schema_name: str, instance: Any, v: Draft202012Validator | None = None) -> None:
    v = v or validator(spec, schema_name)
    try:
        error, via = _best_error(v.iter_errors(instance))
    except Unresolvable as exc:  # a broken $ref in the spec, met on this instance's path
        raise AssertionError(f"{spec} schema {schema_name}: the spec has an unresolvable $ref: {exc}") from exc
    if error is None:
        return
    message = _shorten(error.message, 300)
    if error.validator in ("anyOf", "oneOf") and any(
        tuple(e.relative_path) == ("type",) and e.validator in ("enum", "const") for e in error.context
    ):
        message += f" (no variant is of type {error.instance['type']!r})"
    lines = [f"{spec} schema {schema_name}: invalid at {_path(error)}: {message}"]
    if via:
        lines.append("  variant: " + " > ".join(via))
    lines.append("  schema path: " + "/".join(str(p) for p in error.absolute_schema_path))
    lines.append("  value there: " + _summary(error.instance))
    raise AssertionError("\n".join(lines))


def validate_openai(schema_name: str, instance: Any) -> None:
    """Assert ``instance`` is valid under ``components.schemas[schema_name]`` of the OpenAI spec."""
    _validate("openai", schema_name, instance)


def validate_openresponses(schema_name: str, instance: Any) -> None:
    """Assert ``instance`` is valid under ``components.schemas[schema_name]`` of the Open Responses spec."""
    _validate("openresponses", schema_name, instance)


def validate_openresponses_event(instance: Any) -> None:
    """Assert ``instance`` is one of the Open Responses stream events (the ``text/event-stream`` schema of
    ``POST /responses``; Open Responses has no component for the union)."""
    _validate("openresponses", "<stream event>", instance, _validator_at("openresponses", _OPENRESPONSES_EVENT_POINTER))


# --- event types -----------------------------------------------------------------------------------


def _resolve_local(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    seen = set()
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen or not ref.startswith("#/"):
            raise ValueError(f"cannot follow $ref {ref!r}")
        seen.add(ref)
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
    return schema


def _type_values(doc: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> set[str]:
    """The ``type`` property values a (possibly composite) schema allows."""
    if depth > 20:
        raise ValueError("the stream event union nests too deeply")
    schema = _resolve_local(doc, schema)
    found: set[str] = set()
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in schema.get(key, []):
            found |= _type_values(doc, sub, depth + 1)
    prop = schema.get("properties", {}).get("type")
    if prop is not None:
        prop = _resolve_local(doc, prop)
        if "const" in prop:
            found.add(prop["const"])
        found.update(v for v in prop.get("enum", []) if isinstance(v, str))
    return found


@functools.cache
def _event_types(spec: str) -> frozenset[str]:
    load, _ = _SPECS[spec]
    doc = load()
    if spec == "openai":
        union = doc["components"]["schemas"]["ResponseStreamEvent"]
    else:
        union = doc
        for part in _OPENRESPONSES_EVENT_POINTER[1:].split("/"):
            union = union[part.replace("~1", "/").replace("~0", "~")]
    types = _type_values(doc, union)
    if not types:
        raise ValueError(f"found no stream event types in the {spec} spec")
    return frozenset(types)


def openai_event_types() -> set[str]:
    """Every ``type`` value the variants of the OpenAI spec's ``ResponseStreamEvent`` allow."""
    return set(_event_types("openai"))


def openresponses_event_types() -> set[str]:
    """Every ``type`` value the Open Responses stream events allow."""
    return set(_event_types("openresponses"))
