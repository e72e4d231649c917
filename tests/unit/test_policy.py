"""The one policy object: built once from the settings, its defaults the settings' own."""

from __future__ import annotations

from service.app import policy
from service.domain.stays import Policy
from service.settings import Settings
from service.usecases.tx import DEFAULT_POLICY


def test_the_policys_defaults_are_the_settings_defaults() -> None:
    """A Tx made without the service's settings (a tool, a test) follows the same rules."""
    assert policy(Settings.model_construct()) == Policy() == DEFAULT_POLICY


def test_every_knob_comes_from_the_settings() -> None:
    changed = policy(
        Settings.model_construct(
            stale_after_hours=2.5, webhook_allow_private=True, environment="production"
        )
    )
    assert changed.stale_after.total_seconds() == 2.5 * 3600
    assert changed.webhook_allow_private and changed.webhook_require_https
