"""monitor.core.status: the one table of status classes; 600 and 999 are no server error anywhere."""

from __future__ import annotations

import pytest

from alerts.judge.rules import _is_5xx
from alerts.sinks.spec import classify
from monitor.core.status import is_server_error, status_class, valid_status
from tests.support.alerting import result


@pytest.mark.parametrize(("code", "expected"), [
    (None, None), (99, None), (100, "informational"), (204, "success"), (399, "redirect"), (404, "client_error"),
    (500, "server_error"), (599, "server_error"), (600, None), (999, None),
])
def test_status_class(code: int | None, expected: str | None) -> None:
    """Classes by first digit within 100-599; anything else has none."""
    assert expected == status_class(code)
    assert (expected is not None) == (code is not None and valid_status(code))


def test_rules_and_sinks_read_the_same_table() -> None:
    """ContractRegression's 5xx, the sinks' retry verdict and the probes agree: 600 is not a server error."""
    assert (True, False) == (is_server_error(503), is_server_error(600))
    assert (True, False) == (_is_5xx(result("c", "server_error", status=503, kind="http")),
                             _is_5xx(result("c", "invalid_response", status=600, kind="http")))
    assert ("retry", "rejected") == (classify(503), classify(600))
