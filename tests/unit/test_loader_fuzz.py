"""The loader never raises anything but ConfigError, whatever YAML or environment it is given."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.lint import lint
from supervisor.settings import ConfigError, load_text
from tests.unit import fleetfiles as ff

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True),
    st.text(max_size=20),
)
keys = st.sampled_from(
    [
        "fleet",
        "gateways",
        "name",
        "api_port",
        "client_ids",
        "start",
        "end",
        "mode",
        "env",
        "file",
        "password",
        "restart",
        "daily",
        "strategies",
        "alerts",
        "routes",
        "urls",
        "x",
    ]
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=25,
)


def _load(text: str, environ: dict[str, str]) -> None:
    try:
        loaded = load_text(text, source="fuzz.yaml", environ=environ)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError always says what is wrong"
        for problem in exc.problems:
            assert problem.path and problem.message
        if exc.partial is not None:
            lint(exc.partial, environ=environ, file_exists=lambda p: False)
        return
    lint(loaded, environ=environ, file_exists=lambda p: False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_gives_a_clean_error(text: str) -> None:
    _load(text, {})


@settings(max_examples=300, deadline=None)
@given(trees)
def test_arbitrary_yaml_trees_give_a_clean_error(tree: Any) -> None:
    _load(yaml.safe_dump(tree), {})


env_names = st.sampled_from(
    [
        "IBFLEET_FLEET",
        "IBFLEET_GATEWAYS__0__API_PORT",
        "IBFLEET_GATEWAYS__PAPER_A__MODE",
        "IBFLEET_GATEWAYS",
        "IBFLEET_ALERTS__ROUTES",
        "IBFLEET_GATEWAYS__9__X",
        "IBFLEET_API",
        "IBFLEET_STRATEGIES__0__GATEWAYS__0",
        "IBFLEET___",
        "IBFLEET_REGION",
        "IBFLEET_TIMEZONE",
        "IBFLEET_GATEWAYS__0__CLIENT_IDS__START",
        "IBFLEET_GATEWAYS__0__ENV__JAVA_HEAP_SIZE",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(env_names, st.text(max_size=30), max_size=5))
def test_arbitrary_environment_overrides_give_a_clean_error(env: dict[str, str]) -> None:
    _load(ff.dump(ff.fleet()), env)
