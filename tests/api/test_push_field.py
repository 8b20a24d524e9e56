"""The field the real-time push writes (api/push_field.py), shown in status.pushField."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.resources import make_spec
from unsubscribe_sync.api.push_field import effective_push_field


@pytest.mark.parametrize(
    ("overlay", "discovered", "expected"),
    [
        ({}, None, "HasOptedOutOfEmail"),
        ({"nightlySync": {"enabled": False}}, None, "HasOptedOutOfEmail"),
        (
            {"optOutField": {"target": "MarketoSalesOptOut"}, "nightlySync": {"enabled": False}},
            "X__c",
            "HasOptedOutOfEmail",
        ),
        ({"optOutField": {"target": "MarketoSalesOptOut"}}, None, "MarketoSalesOptOut"),
        ({"optOutField": {"target": "MarketoSalesOptOut"}}, "ToutApp__Opt_Out__c", "ToutApp__Opt_Out__c"),
        (
            {"optOutField": {"target": "MarketoSalesOptOut", "marketoSalesOptOutField": "Sales_Opt_Out__c"}},
            "Other__c",
            "Sales_Opt_Out__c",
        ),
    ],
)
def test_effective_push_field(overlay: dict[str, Any], discovered: str | None, expected: str) -> None:
    assert effective_push_field(make_spec(overlay), discovered) == expected
