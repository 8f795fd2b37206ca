"""Validates incidents against the OCSF JSON Schema of the version and profiles they declare
(the `ocsf-json-schema` package from PyPI, checked with `jsonschema`)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema


@functools.cache
def _validator(version: str, class_uid: int, profiles: tuple[str, ...]) -> Any:
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
    class_schema = schema.get_class_schema(
        schema.lookup_class_name_from_uid(class_uid), profiles=list(profiles)
    )
    cls = jsonschema.validators.validator_for(class_schema)
    cls.check_schema(class_schema)
    return cls(class_schema, format_checker=cls.FORMAT_CHECKER)


def ocsf_errors(event: Mapping[str, Any]) -> list[str]:
    """Every schema error of `event`, as `path: message` (empty when it validates)."""
    meta = event["metadata"]
    validator = _validator(meta["version"], event["class_uid"], tuple(meta.get("profiles", ())))
    return sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(dict(event))
    )
