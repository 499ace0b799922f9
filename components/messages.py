"""Values quoted in error messages, clipped: a 50 MB field in a bad row must not become a 50 MB error."""

from __future__ import annotations

from typing import Any

LIMIT = 80  # characters of a quoted value


def clip(value: Any, limit: int = LIMIT) -> str:
    """``repr(value)``, cut to ``limit`` characters with its full length named when longer."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as text"
    return f"{text[:limit]}... ({size})"


def shorten(value: Any, limit: int = 200) -> Any:
    """A string value cut to ``limit`` characters (kept as a value, e.g. in a JSON report); others as they are."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value):,} characters)"
    return value
