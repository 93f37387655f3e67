"""DAG and task params with a JSON schema (Airflow's ``Param``), validated when a run starts.

A ``Param`` is a default value plus a JSON schema (``type``, ``enum``, ``minimum``, ``format``,
...), checked with the ``jsonschema`` library as Airflow does, so a value that Airflow rejects is
rejected here too. Plain values in ``params={...}`` stay plain: they have no schema.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from flow.exceptions import ParamValidationError

_NOTSET: Any = type("_NotSet", (), {"__repr__": lambda self: "NOTSET"})()

_DATE_FORMATS = {"date", "date-time", "time"}


class Param:
    """``Param(5, type="integer", minimum=1, description="how many")``: a default and its schema."""

    def __init__(self, default: Any = _NOTSET, description: str | None = None, **schema: Any) -> None:
        self.value = default
        self.description = description
        self.schema: dict[str, Any] = dict(schema)
        if description is not None:
            self.schema.setdefault("description", description)

    def __repr__(self) -> str:
        return f"Param({self.value!r}, schema={self.schema!r})"

    @property
    def has_value(self) -> bool:
        return self.value is not _NOTSET

    def resolve(self, value: Any = _NOTSET, *, name: str = "?") -> Any:
        """The value to use (the given one, else the default), checked against the schema."""
        final = self.value if value is _NOTSET else value
        if final is _NOTSET:
            if _allows_null(self.schema):
                return None
            raise ParamValidationError(f"param {name!r}: no value given and it has no default")
        validate_value(name, final, self.schema)
        return final

    def dump(self) -> dict[str, Any]:
        return {"value": None if self.value is _NOTSET else self.value, "schema": self.schema,
                "description": self.description}


def _allows_null(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "null" or (isinstance(kind, list) and "null" in kind)


def validate_value(name: str, value: Any, schema: Mapping[str, Any]) -> None:
    """Raise ParamValidationError naming the param when ``value`` does not fit ``schema``."""
    if not schema:
        return
    import jsonschema

    checker = jsonschema.FormatChecker()
    try:
        jsonschema.validate(value, dict(schema), format_checker=checker)
    except jsonschema.ValidationError as e:
        raise ParamValidationError(f"param {name!r}: invalid value {value!r}: {e.message}") from None
    except jsonschema.SchemaError as e:
        raise ParamValidationError(f"param {name!r}: its schema is invalid: {e.message}") from None


class ParamsDict(dict):  # type: ignore[type-arg]
    """Airflow's ParamsDict: a dict of param values; ``Param`` objects are kept for their schema."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.schemas: dict[str, Param] = {}
        for key, value in (params or {}).items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, Param):
            self.schemas[key] = value
            value = None if not value.has_value else value.value
        super().__setitem__(key, value)

    def validate(self) -> dict[str, Any]:
        return {k: (self.schemas[k].resolve(v, name=k) if k in self.schemas else v) for k, v in self.items()}


def split_params(params: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Param]]:
    """(plain defaults, the Param objects by name): the defaults are what templates see."""
    values: dict[str, Any] = {}
    schemas: dict[str, Param] = {}
    for key, value in (params or {}).items():
        if isinstance(value, Param):
            schemas[key] = value
            values[key] = copy.deepcopy(value.value) if value.has_value else None
        else:
            values[key] = value
    if isinstance(params, ParamsDict):
        schemas.update({k: p for k, p in params.schemas.items() if k not in schemas})
    return values, schemas


def resolve(values: Mapping[str, Any], schemas: Mapping[str, Param | Mapping[str, Any]],
            overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults overridden by a run's conf, each checked against its schema (Param or its JSON dump)."""
    out = dict(values)
    out.update(overrides or {})
    for name, schema in schemas.items():
        if isinstance(schema, Param):
            out[name] = schema.resolve(out.get(name, _NOTSET), name=name)
        else:
            if name not in out or out[name] is None and not _allows_null(schema.get("schema") or {}):
                if "value" not in schema or schema["value"] is None:
                    if _allows_null(schema.get("schema") or {}):
                        out[name] = None
                        continue
                    raise ParamValidationError(f"param {name!r}: no value given and it has no default")
            validate_value(name, out[name], schema.get("schema") or {})
    return out


def dump_schemas(schemas: Mapping[str, Param]) -> dict[str, Any]:
    """The JSON form stored in the serialized DAG (for the trigger dialog and trigger-time checks)."""
    out = {}
    for name, param in schemas.items():
        data = param.dump()
        try:
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError):
            data = {"value": None, "schema": {}, "description": param.description}
        out[name] = data
    return out

