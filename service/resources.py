"""Files the service ships beside its code: migrations and the OpenAPI contract.

In a wheel they are packed inside `service/`; in a source checkout they sit at the repo root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{name} is not shipped with this installation")


def migrations_dir() -> Path:
    return _find("sql")


def openapi_path() -> Path:
    return _find("openapi.yaml")
