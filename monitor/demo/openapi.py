"""The demo backend's OpenAPI 3.1 document: every endpoint, its security and its request body (for `discover`)."""

from __future__ import annotations

from typing import Any

from monitor.demo.tokens import CSRF_COOKIE, CSRF_HEADER

_BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
_PUBLIC: list[dict[str, Any]] = []


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_REFUSED = {
    "401": _error("the bearer token is invalid: malformed, wrongly signed, expired or for another audience"),
    "403": _error("no bearer token, or the token belongs to another user"),
}
_SETTINGS = {"$ref": "#/components/schemas/Settings"}
_USER_ID = {"name": "user_id", "in": "path", "required": True, "description": "the user's id (the token's sub)",
            "schema": {"type": "string", "format": "uuid"}}


def openapi_document(fault_names: list[str]) -> dict[str, Any]:
    """The document served at /openapi.json; `fault_names` are the values POST /_faults/{name} accepts."""
    settings_path = {
        "parameters": [_USER_ID],
        "get": {
            "operationId": "get_user_settings", "summary": "A user's settings (the defaults until they save some)",
            "tags": ["settings"], "security": _BEARER,
            "responses": {"200": _json("the settings", _SETTINGS), **_REFUSED},
        },
        "put": {
            "operationId": "put_user_settings",
            "summary": "Merge fields into a user's settings; needs the CSRF token (cookie and header)",
            "tags": ["settings"], "security": _BEARER,
            "parameters": [
                {"name": CSRF_HEADER, "in": "header", "required": True,
                 "description": "the csrf_token from GET /api/auth/csrf-token", "schema": {"type": "string"}},
                {"name": CSRF_COOKIE, "in": "cookie", "required": True,
                 "description": "set by GET /api/auth/csrf-token", "schema": {"type": "string"}},
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _SETTINGS,
                                                                                "example": {"voice_enabled": True}}}},
            "responses": {"200": _json("the settings now stored", _SETTINGS), **_REFUSED,
                          "422": _error("the body is not a JSON object")},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "PAM backend (pam-monitor demo)", "version": "1.0.0",
                 "description": "A stand-in for the PAM backend; POST /_faults/{name} breaks it on purpose."},
        "paths": {
            "/health": {"get": {"operationId": "health", "tags": ["health"], "security": _PUBLIC,
                                "responses": {"200": _json("healthy", {"type": "object"})}}},
            "/api/v1/pam/voice/health": {"get": {
                "operationId": "voice_health", "tags": ["voice"], "security": _PUBLIC,
                "responses": {"200": _json("the voice engine is healthy", {"type": "object"}),
                              "503": _error("the voice engine is unavailable")}}},
            "/api/v1/pam/voice/tts": {"post": {
                "operationId": "text_to_speech", "tags": ["voice"], "security": _PUBLIC,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["text"], "properties": {"text": {"type": "string", "minLength": 1}},
                }, "example": {"text": "health check"}}}},
                "responses": {"200": {"description": "speech", "content": {"audio/wav": {}}},
                              "422": _error("no text")}}},
            "/api/auth/csrf-token": {"get": {
                "operationId": "csrf_token", "tags": ["auth"], "security": _PUBLIC,
                "summary": f"A CSRF token, also set as the {CSRF_COOKIE} cookie (double submit)",
                "responses": {"200": _json("the token", {
                    "type": "object", "required": ["csrf_token"], "properties": {"csrf_token": {"type": "string"}}})}}},
            "/api/v1/users/{user_id}/settings": settings_path,
            "/_faults": {
                "get": {"operationId": "list_faults", "tags": ["demo"], "security": _PUBLIC,
                        "responses": {"200": _json("active and known faults", {"type": "object"})}},
                "delete": {"operationId": "clear_faults", "tags": ["demo"], "security": _PUBLIC,
                           "responses": {"200": _json("every fault cleared", {"type": "object"})}},
            },
            "/_faults/{name}": {"post": {
                "operationId": "set_fault", "tags": ["demo"], "security": _PUBLIC,
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"type": "string", "enum": fault_names}}],
                "responses": {"200": _json("the fault is on", {"type": "object"}),
                              "404": _error("unknown fault"), "409": _error("the fault needs the database")}}},
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Settings": {"type": "object", "additionalProperties": True, "properties": {
                    "voice_enabled": {"type": "boolean"}, "language": {"type": "string"},
                    "theme": {"type": "string"}, "monitor_nonce": {"type": "string"}}},
                "Error": {"type": "object", "properties": {"detail": {"type": "string"}, "code": {"type": "string"}}},
            },
        },
    }


__all__ = ["openapi_document"]
