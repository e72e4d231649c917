"""No `Any` crosses from a use case to its caller: what a use case returns is typed to the
leaf, so a presenter reads attributes mypy checks (issue 16 item 2). A use case still
returning rows or dicts is named in UNTYPED, which only shrinks."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Iterator
from typing import Any

import asyncpg
from pydantic import BaseModel

import service.usecases
from service.usecases.tx import ReadTx, Tx

# Still returning asyncpg rows or dict[str, Any]: the presenters read them by key.
UNTYPED = frozenset(
    {
        "reports.summary",
    }
)


def use_cases() -> Iterator[tuple[str, Any]]:
    """Every public coroutine of service.usecases whose first parameter is its unit of work,
    with its return type."""
    for info in pkgutil.iter_modules(service.usecases.__path__):
        module = importlib.import_module(f"service.usecases.{info.name}")
        for name, function in vars(module).items():
            if name.startswith("_") or not inspect.iscoroutinefunction(function):
                continue
            if function.__module__ != module.__name__:
                continue
            # Only the unit and the result are evaluated: other parameters may name types
            # that exist for the checker alone (service.db's aliases).
            annotations = function.__annotations__
            first = next(iter(inspect.signature(function).parameters))
            if _evaluated(annotations.get(first), module) in (ReadTx, Tx):
                yield f"{info.name}.{name}", _evaluated(annotations["return"], module)


def _evaluated(annotation: Any, module: Any) -> Any:
    if isinstance(annotation, str):
        return eval(annotation, vars(module))  # noqa: S307 (our own annotations)
    return annotation


def loose(kind: Any, seen: frozenset[Any] = frozenset()) -> bool:
    """Whether `kind` holds Any or a row anywhere: its arguments, a model's or dataclass's
    fields."""
    if kind is Any or kind is asyncpg.Record:
        return True
    if kind in seen:
        return False
    seen = seen | {kind}
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return any(loose(field.annotation, seen) for field in kind.model_fields.values())
    origin = typing.get_origin(kind) or kind
    if dataclasses.is_dataclass(origin) and isinstance(origin, type):
        hints = typing.get_type_hints(origin)
        if any(loose(hints[field.name], seen) for field in dataclasses.fields(origin)):
            return True
    return any(loose(argument, seen) for argument in typing.get_args(kind))


def test_use_cases_return_typed_results() -> None:
    found = dict(use_cases())
    assert "bookings.hold" in found and "availability.search" in found
    loose_now = {name for name, returned in found.items() if loose(returned)}
    assert loose_now <= UNTYPED, f"typed no more: {sorted(loose_now - UNTYPED)}"
    assert not UNTYPED - loose_now, f"typed now, take off UNTYPED: {sorted(UNTYPED - loose_now)}"


def test_the_check_sees_a_row_inside_a_page() -> None:
    from service.paging import Page

    assert loose(Page[asyncpg.Record]) and loose(dict[str, Any])
    assert not loose(Page[int])
