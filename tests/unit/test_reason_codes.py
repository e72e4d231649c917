"""Reason codes have one source, service.vocab (REASON_CODES, DEFAULT_REASON_CODES): the
lifecycle reads it, and here the contract is held to it operation by operation (each action's
body takes exactly its codes, with its default, and no other action's body takes a code), as
are the request models the service and the client read those bodies with. The CHECK
constraints are held to it by tests/integration/test_vocab_sql.py."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from service import models
from service.domain.lifecycle import ACTIONS
from service.vocab import ALL_REASON_CODES, DEFAULT_REASON_CODES, REASON_CODES
from tests.unit.test_client_bodies import SPEC, _resolve

ACTION_PATH = "/v1/bookings/{booking_id}/"


def _action_body(action: str) -> dict[str, Any] | None:
    """The resolved request body schema of the booking action's operation, if it takes one."""
    operation = SPEC["paths"][ACTION_PATH + action]["post"]
    body = operation.get("requestBody")
    if body is None:
        return None
    return _resolve(body["content"]["application/json"]["schema"])


def test_every_coded_action_is_a_lifecycle_action_with_a_default() -> None:
    assert set(REASON_CODES) <= set(ACTIONS)
    assert set(DEFAULT_REASON_CODES) == set(REASON_CODES)
    for action, default in DEFAULT_REASON_CODES.items():
        assert default in set(REASON_CODES[action]), action
        assert ACTIONS[action].reason_codes is REASON_CODES[action]
        assert ACTIONS[action].default_code == default


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_the_contract_takes_each_action_s_codes_and_default(action: str) -> None:
    if ACTION_PATH + action not in SPEC["paths"]:
        pytest.skip(f"{action} is no booking action operation")
    schema = _action_body(action)
    code = None if schema is None else schema.get("properties", {}).get("reason_code")
    if action not in REASON_CODES:
        assert code is None, f"{action} takes no reason_code"
        return
    assert code is not None, f"{action}'s body has no reason_code"
    assert code["enum"] == list(REASON_CODES[action])
    assert code["default"] == DEFAULT_REASON_CODES[action]


def test_the_contract_s_reason_code_lists_every_code() -> None:
    assert set(SPEC["components"]["schemas"]["ReasonCode"]["enum"]) == ALL_REASON_CODES


@pytest.mark.parametrize("action", sorted(REASON_CODES))
def test_the_request_model_takes_the_action_s_codes(action: str) -> None:
    schema = _action_body(action)
    assert schema is not None
    # The model named as the contract's schema: the one the client sends (test_client_bodies)
    # and the handler reads.
    name = next(n for n, s in SPEC["components"]["schemas"].items() if s is schema)
    model = getattr(models, name)
    annotation = model.model_fields["reason_code"].annotation
    assert REASON_CODES[action] in get_args(annotation), (name, annotation)
