"""Property-based tests of the config file model: any input either loads or fails with a ConfigError naming a key."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from unsubscribe_sync.api.config import Config, ConfigError, parse_config
from unsubscribe_sync.api.push_field import effective_push_target
from unsubscribe_sync.api.spec import OptOutTarget

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
section_names = st.sampled_from(["salesforce", "optOut", "nightly", "ledger", "worker", "logging", "bogus"])


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(section_names, st.dictionaries(st.text(min_size=1, max_size=25), values, max_size=4), max_size=4)
)
def test_any_mapping_loads_or_names_the_problem(data: dict[str, Any]) -> None:
    try:
        cfg = parse_config(data)
    except ConfigError as exc:
        assert str(exc).startswith("config: ")
        assert exc.problems, "a validation failure lists its problems"
        for key, reason in exc.problems:
            assert key and reason
            assert f"{key}: {reason}" in str(exc)
    else:
        assert isinstance(cfg, Config)
        # a valid config survives a round trip through its own serialisation
        assert parse_config(cfg.model_dump(mode="json")) == cfg


@given(st.sampled_from(list(OptOutTarget)), st.booleans())
def test_push_target_is_email_opt_out_whenever_nightly_is_off(target: OptOutTarget, nightly: bool) -> None:
    result = effective_push_target(target, nightly)
    assert result is (target if nightly else OptOutTarget.EMAIL_OPT_OUT)
