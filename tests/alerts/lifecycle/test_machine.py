"""The pure state machine: thresholds, blips, reminders, flapping and maintenance silencing."""

from __future__ import annotations

import ast
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from alerts.lifecycle import machine
from alerts.lifecycle.machine import Action, AlertState, Hold, Policy, Status, flap_hold, step
from alerts.model import Event, Observation, Signal

KEY = "ContractRegression/settings_get_unauth"
LABELS = {"alertname": "ContractRegression", "check": "settings_get_unauth", "from": "403", "to": "500"}


def obs(bad: bool) -> Observation:
    return Observation(KEY, "ContractRegression", "settings_get_unauth", Signal.BAD if bad else Signal.GOOD,
                       LABELS if bad else {}, {"summary": "expected 401|403, got 500"} if bad else {})


def kind(action: Action) -> str:
    """The action's event, prefixed `silenced ` when a maintenance window held it back."""
    return f"silenced {action.event.value}" if action.silenced else action.event.value


def run(seq: str, policy: Policy | None = None, *, every: float = 30.0, state: AlertState | None = None,
        start: float = 0.0, silenced_at: Sequence[int] = ()) -> tuple[AlertState, list[tuple[int, str]]]:
    """Feed a sequence like 'GGBBGG' (B bad, G good), one step each `every` seconds; collect actions by index."""
    policy = policy or Policy()
    s = state or AlertState(KEY, "ContractRegression", "settings_get_unauth")
    actions: list[tuple[int, str]] = []
    for i, ch in enumerate(seq):
        p = dataclasses.replace(policy, silenced=i in silenced_at)
        s, acts = step(s, obs(ch == "B"), start + i * every, p)
        actions.extend((i, kind(a)) for a in acts)
    return s, actions


def test_single_blip_does_not_page() -> None:
    """One bad result between good ones goes pending and back, with no notification."""
    state, actions = run("GGBGG")
    assert [] == actions
    assert Status.INACTIVE == state.status


def test_regression_fires_at_failure_threshold() -> None:
    """failure_threshold=2: the second consecutive bad result (the confirmation re-run) fires."""
    state, actions = run("GBB")
    assert [(2, Event.FIRING)] == actions
    assert Status.FIRING == state.status
    assert LABELS == dict(state.labels)
    assert 30.0 == state.started_at


def test_threshold_three_needs_three() -> None:
    """failure_threshold=3: two bad results stay pending."""
    state, actions = run("BB", Policy(failure_threshold=3))
    assert ([], Status.PENDING) == (actions, state.status)
    state, actions = run("BBB", Policy(failure_threshold=3))
    assert [(2, Event.FIRING)] == actions


def test_confirmed_bad_fires_without_waiting_for_the_threshold() -> None:
    """A confirmed BAD observation (a long rate-limited spell) fires at once, from inactive or from pending."""
    confirmed = obs(True)._replace(confirmed=True)
    state, actions = step(AlertState(KEY, "ContractRegression", "settings_get_unauth"), confirmed, 0.0,
                          Policy(failure_threshold=5))
    assert ([Event.FIRING], Status.FIRING) == ([a.event for a in actions], state.status)
    pending, _ = run("B", Policy(failure_threshold=5))
    state, actions = step(pending, confirmed, 30.0, Policy(failure_threshold=5))
    assert ([Event.FIRING], Status.FIRING) == ([a.event for a in actions], state.status)


def test_resolves_after_success_threshold() -> None:
    """A firing alert resolves on the success_threshold-th good result, not before."""
    state, actions = run("BBGG")
    assert [(1, Event.FIRING), (3, Event.RESOLVED)] == actions
    assert Status.INACTIVE == state.status
    _, actions = run("BBGBGG")
    assert [(1, Event.FIRING), (5, Event.RESOLVED)] == actions


def test_reminders_respect_repeat_interval() -> None:
    """A firing alert reminds once repeat_interval has passed since the last notification, never sooner."""
    policy = Policy(repeat_interval=100.0)
    _, actions = run("B" * 10, policy, every=30.0)
    # fired at index 1 (t=30); reminders at t>=130 -> index 5 (t=150), then t>=250 -> index 9 (t=270).
    assert [(1, Event.FIRING), (5, Event.REMINDER), (9, Event.REMINDER)] == actions


def test_flapping_reported_once_then_held() -> None:
    """More than flap_max firing edges in the window: one FLAPPING, then no edge pages while it flaps."""
    policy = Policy(failure_threshold=1, success_threshold=1, flap_max=4, flap_window=600.0)
    state, actions = run("BGBGBGBGBG", policy, every=10.0)
    kinds = [k for _, k in actions]
    assert [Event.FIRING, Event.RESOLVED, Event.FIRING, Event.RESOLVED,
            Event.FLAPPING] == kinds
    assert (Status.FIRING, True) == (state.status, state.flapping)


def test_flapping_settles_and_resolves() -> None:
    """Once the condition has been steady (good) for a whole window, a flapping alert resolves once."""
    policy = Policy(failure_threshold=1, success_threshold=1, flap_max=4, flap_window=100.0)
    state, actions = run("BGBGBG", policy, every=10.0)
    assert Event.FLAPPING == actions[-1][1]
    state, later = run("GGGGGGGGGGGG", policy, every=10.0, state=state, start=60.0)
    assert [Event.RESOLVED] == [k for _, k in later]
    assert (Status.INACTIVE, False) == (state.status, state.flapping)


def test_flap_hold_says_why_and_moves_with_the_last_raw_change() -> None:
    """Default policy (more than 6 changes in 10 min): the seventh change starts flapping; flap_hold names the count
    and the window, and ends a window after the last raw change: after the seventh, then after the condition
    turned good; once settled (resolved) there is no hold and the count is cleared."""
    policy = Policy(failure_threshold=1, success_threshold=1)
    state, actions = run("BGBGBGB", policy, every=30.0)
    assert (6, Event.FLAPPING) == actions[-1]
    assert (7, 180.0) == (state.flap_changes, state.raw_changed_at)
    reason = "flapping: 7 state changes in 10 min; held firing until the check is steady for 10 min"
    assert Hold(180.0 + 600.0, reason) == flap_hold(state, policy)
    state, _ = run("G", policy, state=state, start=210.0)
    assert Hold(210.0 + 600.0, reason) == flap_hold(state, policy)
    state, later = run("G" * 21, policy, every=30.0, state=state, start=240.0)
    assert [(19, Event.RESOLVED)] == later  # t = 240 + 19 * 30 = 810: steady for the whole window
    assert (None, 0, Status.INACTIVE) == (flap_hold(state, policy), state.flap_changes, state.status)


def test_flap_hold_words_follow_the_policy() -> None:
    """Another window and threshold: the words and the end follow them; a state stored before flap_changes existed
    (0) is described by the threshold; a state that does not flap has no hold."""
    policy = Policy(failure_threshold=1, success_threshold=1, flap_max=2, flap_window=90.0)
    state, _ = run("BGB", policy, every=10.0)
    assert Hold(20.0 + 90.0, "flapping: 3 state changes in 90 s; held firing until the check is steady for 90 s") \
        == flap_hold(state, policy)
    older = flap_hold(dataclasses.replace(state, flap_changes=0), policy)
    hourly = flap_hold(state, dataclasses.replace(policy, flap_window=3600.0))
    assert ("flapping: more than 2 state changes in 90 s; held firing until the check is steady for 90 s",
            "flapping: 3 state changes in 1 h; held firing until the check is steady for 1 h") \
        == (older and older.reason, hourly and hourly.reason)
    assert None is flap_hold(run("BB")[0], Policy())


def test_maintenance_silences_firing_but_tracks_state() -> None:
    """A firing edge inside a maintenance window is suppressed; the state is firing all the same."""
    state, actions = run("BBB", silenced_at=(0, 1, 2))
    assert [(1, "silenced firing")] == actions
    assert (Status.FIRING, False) == (state.status, state.notified)


def test_silenced_firing_pages_after_window_if_still_bad() -> None:
    """Still bad when the window closes: the firing goes out then."""
    _, actions = run("BBBB", silenced_at=(0, 1, 2))
    assert [(1, "silenced firing"), (3, Event.FIRING)] == actions


def test_resolution_of_silenced_firing_is_not_sent() -> None:
    """Fired and healed inside the window: nothing was paged, so no resolution is sent either."""
    _, actions = run("BBGG", silenced_at=(0, 1, 2, 3))
    assert [(1, "silenced firing")] == actions


def test_resolution_after_window_goes_out_when_firing_was_sent() -> None:
    """Paged before the window, healed during and after it: the resolution is sent (nothing stays open)."""
    _, actions = run("BBBGG", silenced_at=(2, 3))
    assert [(1, Event.FIRING), (4, Event.RESOLVED)] == actions


def test_state_round_trips_through_dict() -> None:
    """What the store writes reads back equal."""
    state, _ = run("BBB")
    assert state == AlertState.from_dict(state.to_dict())


def test_good_on_a_fresh_state_leaves_nothing() -> None:
    """A GOOD observation for an alert with no state yields a disposable state and no action, whatever the policy
    (the engine relies on this to skip good results for alerts it holds no state for)."""
    for policy in (Policy(), Policy(silenced=True), Policy(failure_threshold=1, success_threshold=1, flap_max=2)):
        state, actions = step(AlertState(KEY, "ContractRegression", "settings_get_unauth"), obs(False), 30.0, policy)
        assert (True, []) == (state.disposable, actions)


def test_machine_imports_nothing_but_the_model() -> None:
    """lifecycle/machine.py imports the standard library and alerts.model only (no rules, no config): it stays pure."""
    tree = ast.parse(Path(machine.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {"alerts.model"} == {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}


def test_silenced_flapping_is_marked_not_sent() -> None:
    """Flapping starts inside a maintenance window: the flapping action comes back silenced, the state flaps."""
    policy = Policy(failure_threshold=1, success_threshold=1, flap_max=4, flap_window=600.0)
    state, actions = run("BGBGBG", policy, every=10.0, silenced_at=(4, 5))
    assert [(0, Event.FIRING), (1, Event.RESOLVED), (2, Event.FIRING), (3, Event.RESOLVED),
            (4, "silenced flapping")] == actions
    assert (Status.FIRING, True, False) == (state.status, state.flapping, state.notified)
