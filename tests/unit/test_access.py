"""The caller's scope, stated once by the Principal: the force and provider filters every list,
count and per-object check reads, and the narrowing of a request's own force or provider."""

from __future__ import annotations

from uuid import uuid4

import pytest

from service.domain.access import Principal, check_provider_scope, in_scope
from service.domain.webhooks import Scope
from service.errors import NotFound
from service.vocab import Role

MINE, THEIRS = uuid4(), uuid4()
OFFICER = Principal(uuid4(), Role.OFFICER, force_code="gmp")
PROVIDER = Principal(uuid4(), Role.PROVIDER, provider_id=MINE)
ADMIN = Principal(uuid4(), Role.ADMIN)


def test_each_role_s_filters() -> None:
    assert (OFFICER.force_filter, OFFICER.provider_filter) == ("gmp", None)
    assert (PROVIDER.force_filter, PROVIDER.provider_filter) == (None, MINE)
    assert (ADMIN.force_filter, ADMIN.provider_filter) == (None, None)
    assert [p.scope for p in (OFFICER, PROVIDER, ADMIN)] == ["gmp", str(MINE), None]


def test_an_object_is_seen_within_the_filters_only() -> None:
    assert OFFICER.sees("gmp", THEIRS) and not OFFICER.sees("wmp", MINE)
    assert PROVIDER.sees("wmp", MINE) and not PROVIDER.sees("gmp", THEIRS)
    assert ADMIN.sees("wmp", THEIRS)
    assert in_scope(OFFICER, "gmp", THEIRS) and not in_scope(PROVIDER, "gmp", THEIRS)
    check_provider_scope(PROVIDER, MINE, "site")
    check_provider_scope(OFFICER, THEIRS, "site")
    with pytest.raises(NotFound):
        check_provider_scope(PROVIDER, THEIRS, "site")


def test_a_request_is_narrowed_to_the_caller_s_own_scope() -> None:
    assert OFFICER.narrow(None, THEIRS) == ("gmp", THEIRS)
    assert OFFICER.narrow("gmp", None) == ("gmp", None)
    assert PROVIDER.narrow("wmp", None) == ("wmp", MINE)
    assert ADMIN.narrow("wmp", THEIRS) == ("wmp", THEIRS)
    assert ADMIN.narrow(None, None) == (None, None)
    with pytest.raises(NotFound, match="force"):
        OFFICER.narrow("wmp", None)
    with pytest.raises(NotFound, match="provider"):
        PROVIDER.narrow(None, THEIRS)


def test_a_subscription_s_scope_is_the_caller_s() -> None:
    assert Scope.of(OFFICER) == Scope(Role.OFFICER, "gmp", None)
    assert Scope.of(PROVIDER) == Scope(Role.PROVIDER, None, MINE)
    assert Scope.of(ADMIN) == Scope(Role.ADMIN, None, None)
