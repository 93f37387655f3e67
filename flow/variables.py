"""Variables: named values shared by DAGs, read by task code (Airflow's ``Variable``).

Where a value comes from, first match wins: an ``AIRFLOW_VAR_<KEY>`` environment variable (as in
Airflow), then the backend the worker installed (flowd's database, through the values it handed
the try), then the default. Without a backend (``python dag.py``, ``flow tasks test`` offline) only
the environment is read. Keys that look secret are masked where flow shows values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from flow.exceptions import AirflowException

SECRET_WORDS = (
    "access_token", "api_key", "apikey", "authorization", "passphrase", "passwd", "password",
    "private_key", "secret", "token", "keyfile_dict", "service_account",
)
"""Airflow's sensitive-field words: a key containing one is shown as ``***``."""

_NOTSET: Any = object()


class VariableNotFound(AirflowException, KeyError):
    """``Variable.get`` of a key that exists nowhere, without a default."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "variable not found"


class Backend:
    """Reads and writes variables; the worker installs one that talks to flowd's store."""

    def get(self, key: str) -> str | None:
        return None

    def set(self, key: str, value: str, description: str | None = None) -> None:
        raise AirflowException(f"Variable.set({key!r}): no variable store in this process (run it under flowd)")

    def delete(self, key: str) -> int:
        raise AirflowException(f"Variable.delete({key!r}): no variable store in this process (run it under flowd)")


class MemoryBackend(Backend):
    """A dict of values: what a try receives from flowd, and what tests use."""

    def __init__(self, values: dict[str, str] | None = None,
                 on_change: Callable[[str, str | None], None] | None = None) -> None:
        self.values = dict(values or {})
        self.on_change = on_change

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str, description: str | None = None) -> None:
        self.values[key] = value
        if self.on_change is not None:
            self.on_change(key, value)

    def delete(self, key: str) -> int:
        found = self.values.pop(key, None)
        if self.on_change is not None:
            self.on_change(key, None)
        return 0 if found is None else 1


_backend: Backend = Backend()


def set_backend(backend: Backend) -> None:
    global _backend
    _backend = backend


def is_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def mask(key: str, value: Any) -> Any:
    return "***" if is_secret(key) else value


class Variable:
    """``Variable.get("key", default_var=None, deserialize_json=False)``, ``Variable.set``, ``Variable.delete``."""

    @staticmethod
    def get(key: str, default_var: Any = _NOTSET, deserialize_json: bool = False, *, default: Any = _NOTSET) -> Any:
        if default is not _NOTSET:
            default_var = default
        raw = os.environ.get(f"AIRFLOW_VAR_{key.upper()}")
        if raw is None:
            raw = _backend.get(key)
        if raw is None:
            if default_var is _NOTSET:
                raise VariableNotFound(f"Variable {key!r} does not exist (set it with `flow variables set {key} "
                                       f"VALUE` or AIRFLOW_VAR_{key.upper()})")
            return default_var
        if deserialize_json:
            try:
                return json.loads(raw)
            except ValueError as e:
                raise AirflowException(f"Variable {key!r} is not valid JSON: {e}") from None
        return raw

    @staticmethod
    def set(key: str, value: Any, description: str | None = None, serialize_json: bool = False) -> None:
        text = json.dumps(value, indent=2) if serialize_json else str(value)
        _backend.set(key, text, description)

    @staticmethod
    def delete(key: str) -> int:
        return _backend.delete(key)

    @staticmethod
    def setdefault(key: str, default: Any, deserialize_json: bool = False) -> Any:
        found = Variable.get(key, None, deserialize_json=deserialize_json)
        if found is None:
            Variable.set(key, default, serialize_json=deserialize_json)
            return default
        return found
