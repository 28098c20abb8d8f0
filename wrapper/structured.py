"""Pure: structured output, OpenAI's ``response_format``, in Claude Code's terms. No I/O.

Claude Code has structured output of its own (the SDK's ``output_format``, the CLI's
``--json-schema``): it offers Claude a ``StructuredOutput`` tool whose input schema is the
client's schema, checks each call against it (asking Claude again up to 5 times, CLI
2.1.332), and reports the accepted value as the result's ``structured_output``. So:
- ``json_schema``: that schema, as sent. The answer's content is the value as JSON, checked
  here once more against the schema (``problem``); anything Claude wrote beside the call is
  not the answer and is dropped (wrapper.output).
- ``json_object``: the schema ``{"type": "object"}``: one JSON object that parses, whatever
  the prompt says (OpenAI asks the client to say "JSON" in a message; this does not).
- ``text``: nothing to do.

What is refused before the run (400, naming the field): a schema that is not a valid JSON
Schema; a root that is not an object (a tool's input is an object, and so is OpenAI's strict
root); a ``$ref`` that leaves the schema (nothing is fetched); a schema over
``MAX_SCHEMA_BYTES``. ``strict: true`` needs nothing more: Claude Code only accepts an answer
that validates, and a strict schema is a schema like any other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from wrapper.errors import InvalidRequest
from wrapper.unapplied import ResponseFormat

# The schema goes to the CLI as one command-line argument (``--json-schema``), and Linux
# caps one argument at 128 KiB (MAX_ARG_STRLEN); OpenAI's own cap on a strict schema's
# names and enum values is 120,000 characters. Half the argument cap, as JSON.
MAX_SCHEMA_BYTES = 64 * 1024
# What ``json_object`` asks for.
JSON_OBJECT: dict[str, Any] = {"type": "object"}
# The field every refusal names.
FIELD = "response_format"


def output_schema(response_format: ResponseFormat | None) -> dict[str, Any] | None:
    """The JSON Schema the answer must follow, or None for plain text; refuses what Claude
    Code cannot answer with."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return JSON_OBJECT
    if response_format.type != "json_schema":
        raise InvalidRequest(
            f"Invalid value for '{FIELD}.type': {response_format.type!r}; expected 'text',"
            " 'json_object' or 'json_schema'.",
            param=f"{FIELD}.type",
        )
    spec = response_format.json_schema
    param = f"{FIELD}.json_schema"
    if spec is None:
        raise InvalidRequest(f"Missing '{param}' for 'json_schema' output.", param=param)
    if spec.schema is None:
        raise InvalidRequest(
            f"Missing '{param}.schema': this server needs the schema to answer with.",
            param=f"{param}.schema",
        )
    return _checked(spec.schema, f"{param}.schema")


def _checked(schema: dict[str, Any], param: str) -> dict[str, Any]:
    size = len(json.dumps(schema).encode())
    if size > MAX_SCHEMA_BYTES:
        raise InvalidRequest(
            f"'{param}' is {size:,} bytes as JSON; this server takes at most {MAX_SCHEMA_BYTES:,}.",
            param=param,
        )
    if schema.get("type") != "object":
        raise InvalidRequest(
            f'\'{param}\' must describe an object ("type": "object" at its root): Claude'
            " Code answers structured output as one JSON object.",
            param=param,
        )
    for ref in _refs(schema):
        if not ref.startswith("#"):
            raise InvalidRequest(
                f"'{param}' refers outside itself ($ref {ref[:100]!r}); only references"
                " within the schema ('#/...') are supported.",
                param=param,
            )
    validator = jsonschema.validators.validator_for(schema)
    try:
        validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise InvalidRequest(
            f"'{param}' is not a valid JSON Schema: {exc.message}"
            + (f" (at '{where}')" if where else ""),
            param=param,
        ) from exc
    return schema


def _refs(node: object) -> Iterator[str]:
    """Every ``$ref`` value in a schema, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def problem(value: Any, schema: dict[str, Any]) -> str | None:
    """Why ``value`` does not follow ``schema`` (checked before the run), or None."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return str(error.message) + (f" (at '{where}')" if where else "")


def text(value: object) -> str:
    """The value as the answer's content: compact JSON, non-ASCII kept as it is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
