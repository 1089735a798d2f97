"""Names of JSON value types for one-line messages ("got a JSON array", "got JSON null")."""

from __future__ import annotations

from typing import Any


def json_kind(value: Any) -> str:
    """``"a JSON object"``, ``"a JSON array"``, ``"a JSON string"``, ``"a JSON number"``,
    ``"a JSON boolean"`` or ``"JSON null"``: what ``value`` (parsed from JSON) is."""
    if value is None:
        return "JSON null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, (list, tuple)):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, (int, float)):
        return "a JSON number"
    return f"a {type(value).__name__}"
