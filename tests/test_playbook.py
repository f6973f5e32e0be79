"""Pure parts of the playbook model: retry backoff and `when` expressions."""

from __future__ import annotations

import pytest

from receiver.errors import TemplateError
from receiver.playbook import RetrySpec
from receiver.templates import compile_expression

RETRY = RetrySpec(attempts=5, backoff=2.0, max_backoff=10.0)


@pytest.mark.parametrize(
    ("attempt", "rand", "delay"),
    [
        (1, 0.999999, 2.0),  # the base: backoff
        (2, 0.999999, 4.0),  # doubles
        (3, 0.999999, 8.0),
        (4, 0.999999, 10.0),  # capped by max_backoff
        (9, 0.999999, 10.0),
        (1, 0.0, 1.0),  # jitter takes off at most half
        (4, 0.0, 5.0),
    ],
)
def test_retry_delay(attempt: int, rand: float, delay: float) -> None:
    """Backoff grows exponentially, is capped, and jitter stays within [half, full]."""
    assert RETRY.delay(attempt, rand) == pytest.approx(delay, rel=1e-5)


def test_retry_durations_parse() -> None:
    """Backoffs are written as durations."""
    r = RetrySpec.model_validate({"attempts": 3, "backoff": "500ms", "max_backoff": "1m"})
    assert (r.backoff, r.max_backoff) == (0.5, 60.0)


@pytest.mark.parametrize(
    ("source", "context", "value"),
    [
        ("steps.check.exit_code != 0", {"steps": {"check": {"exit_code": 1}}}, True),
        ("{{ steps.check.json.unhealthy }}", {"steps": {"check": {"json": {"unhealthy": False}}}}, False),
        ("alert.labels.severity == 'critical'", {"alert": {"labels": {"severity": "critical"}}}, True),
        ("'prod' in params.namespace", {"params": {"namespace": "prod-eu"}}, True),
    ],
)
def test_when_expressions(source: str, context: dict[str, object], value: bool) -> None:
    """`when` is a Jinja2 expression over the step context, with or without {{ }}."""
    assert compile_expression(source, "w").evaluate(context) is value


def test_when_undefined_names_the_variable() -> None:
    """An undefined name in `when` is an error naming it, not a silent false."""
    with pytest.raises(TemplateError) as exc:
        compile_expression("steps.nope.status == 'failed'", "step 's' when").evaluate({"steps": {}})
    assert "nope" in str(exc.value) and "step 's' when" in str(exc.value)


def test_when_syntax_error() -> None:
    """A malformed expression is refused when it compiles."""
    with pytest.raises(TemplateError):
        compile_expression("steps.x ==", "w")
