"""The configuration reference (``docs/configuration.md``), generated from the pydantic models.

    python -m shopdistill.components.config.reference > docs/configuration.md

Every key is listed with its type, default and the field's description; a test fails when the page in
``docs/`` differs from what this prints, so the page cannot drift from the code.
"""

from __future__ import annotations

import datetime
import sys
import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from shopdistill.components.config.schema import (
    AmazonSource,
    EventLogSource,
    PipelineConfig,
    SyntheticSource,
)

HEADER = """# Configuration reference

Generated from the pydantic models in `components/config/schema.py` by
`python -m shopdistill.components.config.reference > docs/configuration.md`; do not edit by hand.

A profile or configuration file is YAML with these sections. A file may start with
`extends: <profile or file.yaml>` and then give only what it changes (`data.source` is replaced whole).
Unknown keys are rejected. Any key can be set from the command line with `--set section.key=value`.
"""

SOURCES = {"synthetic": SyntheticSource, "event_log": EventLogSource, "amazon": AmazonSource}


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is not None:
        args = ", ".join(_type_name(a) for a in get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`"
    if field.is_required():
        return "required"
    if isinstance(field.default, BaseModel):
        return "(section)"
    if isinstance(field.default, datetime.date):
        return f"`{field.default.isoformat()}`"
    return f"`{field.default!r}`"


def _section(model: type[BaseModel], prefix: str, out: list[str], title: str = "") -> None:
    """A table of ``model``'s plain fields, then one section per nested model."""
    nested: list[tuple[str, type[BaseModel], str]] = []
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        annotation = field.annotation
        models = [
            a for a in (annotation, *get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if models:
            nested.append((key, models[0], ""))
            continue
        if key == "data.source":
            nested += [(key, cls, f"`data.source` with `kind: {kind}`") for kind, cls in SOURCES.items()]
            continue
        desc = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(annotation)} | {_default(field)} | {desc} |")
    if rows:
        doc = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
        out += [f"## {title or f'`{prefix}`'}", ""] + ([doc, ""] if doc and "pydantic" not in doc else [])
        out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for key, cls, heading in nested:
        _section(cls, key, out, heading)


def render_reference() -> str:
    out = [HEADER]
    _section(PipelineConfig, "", out)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_reference())
