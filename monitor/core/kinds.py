"""What a check kind's record tells the alert rules: its alertnames, and how its results are judged.

The probes declare it (`probes.kind.Kind.rules`, gathered in `probes.RULES_BY_KIND`); alerts/ reads it from the
`rules_by_kind` mapping the daemon hands the engine (alerts/ stands on monitor.core only, so the record's alert
facts travel in this one type rather than in `if kind == "..."` branches).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self


class KindRules(tuple[str, ...]):
    """A kind's built-in alertnames (a plain tuple of them, for every reader that wants only the names), with:

    - `per_step`: its results report steps (`details["step"]`), and each step is an alert instance of its own
      (a journey);
    - `server_error_is_down`: a 5xx means the endpoint is down (`EndpointDown`), not a changed contract or a
      failed expectation (a plain health check).
    """

    per_step: bool
    server_error_is_down: bool

    def __new__(cls, names: Iterable[str] = (), *, per_step: bool = False, server_error_is_down: bool = False) -> Self:
        """The names, in order, with the kind's judging facts."""
        self = super().__new__(cls, names)
        self.per_step = per_step
        self.server_error_is_down = server_error_is_down
        return self

    def having(self, names: Iterable[str]) -> KindRules:
        """The same kind's facts with other names (the rules left after configuration disabled some)."""
        return KindRules(names, per_step=self.per_step, server_error_is_down=self.server_error_is_down)

    def __repr__(self) -> str:
        return (f"KindRules({tuple(self)!r}, per_step={self.per_step}, "
                f"server_error_is_down={self.server_error_is_down})")


def kind_rules(names: Iterable[str]) -> KindRules:
    """`names` as a KindRules: itself if it is one, else the names with no special judging."""
    return names if isinstance(names, KindRules) else KindRules(names)
