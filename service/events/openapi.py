"""The OpenAPI 3.1 document of API v1, generated from the same pydantic models."""

from __future__ import annotations

from pydantic.json_schema import models_json_schema

from canhgac_common.events import Event
from service import __version__


def _closed_pattern_maps(node) -> None:
    """Mark pattern-keyed maps closed: pydantic refuses keys that miss the pattern.

    ``dict[PiiKind, int]`` becomes ``patternProperties`` alone, which in JSON Schema lets any
    other key through with any value; the API answers 400 to those, so the document says so.
    """
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _closed_pattern_maps(value)
    elif isinstance(node, list):
        for value in node:
            _closed_pattern_maps(value)


def build_openapi() -> dict:
    """Return the OpenAPI document for /api/v1."""
    from service.events.api import ErrorAnswer, Heartbeat, IngestAnswer

    _, defs = models_json_schema(
        [(m, "validation") for m in (Event, Heartbeat, IngestAnswer, ErrorAnswer)],
        ref_template="#/components/schemas/{model}",
    )
    schemas = defs["$defs"]
    _closed_pattern_maps(schemas)
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    err = {"application/json": {"schema": ref("ErrorAnswer")}}
    auth_errors = {
        "400": {"description": "Invalid JSON or event, or an event whose host is not its "
                               "agent's (host_mismatch); names the index and field",
                "content": err},
        "401": {"description": "Missing or invalid bearer token", "content": err},
        "403": {"description": "The agent id belongs to another token's source", "content": err},
        "409": {"description": "The agent id is a look-alike of another token's agent "
                               "(agent_id_lookalike), or a heartbeat's host is not its agent's "
                               "(host_mismatch)", "content": err},
        "413": {"description": "Batch over the configured count or size", "content": err},
        "503": {"description": "Storage unavailable (database down or disk full); retry later",
                "content": err},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Canh Gác API", "version": __version__,
                 "description": "Access events from agents and business software."},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/api/v1/events": {
                "post": {
                    "summary": "Store one event or a batch durably in the audit trail",
                    "security": [{"bearer": []}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "oneOf": [ref("Event"), {"type": "array", "items": ref("Event")}]}}}},
                    "responses": {
                        "200": {"description": "Stored (or seen before)",
                                "content": {"application/json": {"schema": ref("IngestAnswer")}}},
                        **auth_errors,
                        "400": {"description": "Invalid JSON or event; names the index and field "
                                               "(an id repeated in the batch with different "
                                               "content: `id_conflict`)", "content": err},
                        "409": {"description": "An event id already stored with different content "
                                               "(`id_conflict`, names the id and index); nothing "
                                               "of the batch is stored", "content": err},
                    },
                }
            },
            "/api/v1/agents/heartbeat": {
                "post": {
                    "summary": "An agent's heartbeat",
                    "security": [{"bearer": []}],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": ref("Heartbeat")}}},
                    "responses": {
                        "200": {"description": "Recorded", "content": {"application/json": {
                            "schema": {"type": "object", "properties": {
                                "status": {"type": "string"}}}}}},
                        **auth_errors,
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {"summary": "This document",
                        "responses": {"200": {"description": "OpenAPI document",
                                              "content": {"application/json": {}}}}}
            },
        },
    }
