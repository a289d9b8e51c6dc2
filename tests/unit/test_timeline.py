"""Predicted release and rollback timelines, from the stack's settings and stated estimates."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from automation.errors import BadInput
from automation.release_state import ReleaseGroup, ReleaseState
from automation.strategies import release_phases
from automation.timeline import Assumptions, predict, predict_rollback

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
OLD = ReleaseGroup("1.0.0", "ami-00000000000000001")
NEW = ReleaseGroup("2.0.0", "ami-00000000000000002")
BASE = ReleaseState(groups=(OLD,))

# fleet's tuned health and drain settings (Pulumi.yaml) and AWS's defaults, for three instances.
TUNED = {"desiredCapacity": 3, "healthCheckIntervalSeconds": 5, "healthyThreshold": 2,
         "unhealthyThreshold": 2, "deregistrationDelaySeconds": 30}
AWS_DEFAULTS = {**TUNED, "healthCheckIntervalSeconds": 30, "healthyThreshold": 5, "deregistrationDelaySeconds": 300}
EST = Assumptions()


def health(s):
    return s["healthCheckIntervalSeconds"] * s["healthyThreshold"]


def boot_and_check(s, a=EST):
    return a.update_seconds + a.launch_seconds + health(s)


def drain_and_stop(s, a=EST):
    return a.update_seconds + s["deregistrationDelaySeconds"] + a.terminate_seconds


@pytest.mark.parametrize("settings", [TUNED, AWS_DEFAULTS], ids=["tuned", "aws-defaults"])
def test_replace_boots_checks_drains_and_stops_in_one_phase(settings):
    """replace: one update that launches, passes the health checks, drains the old group and stops it."""
    timeline = predict(release_phases(BASE, NEW, strategy="replace", now=NOW), settings, base=BASE)
    (phase,) = timeline.phases
    assert phase.seconds == boot_and_check(settings) + settings["deregistrationDelaySeconds"] + EST.terminate_seconds
    assert [step for step, _ in phase.steps] == ["update", "launch", "health checks", "drain", "terminate"]
    assert (phase.instances, phase.serving) == (3, 3)
    assert timeline.peak_instances == 2 * settings["desiredCapacity"]
    assert timeline.total_seconds == phase.seconds


def test_canary_phases_add_up_with_the_hold():
    """canary: boot N, hold its minutes, grow to full, retire the old group; peak is both groups at full."""
    phases = release_phases(BASE, NEW, strategy="canary", canary=1, hold_minutes=10, now=NOW)
    timeline = predict(phases, TUNED, base=BASE)
    assert [(p.name, p.seconds, p.instances) for p in timeline.phases] == [
        ("canary", boot_and_check(TUNED), 4),
        ("hold", 600, 4),
        ("grow", boot_and_check(TUNED), 6),
        ("retire-old", drain_and_stop(TUNED), 3),
    ]
    assert timeline.total_seconds == 2 * boot_and_check(TUNED) + 600 + drain_and_stop(TUNED)
    assert timeline.peak_instances == 6 and not timeline.open_ended


def test_hold_until_continue_is_open_ended():
    """A hold without minutes is not counted in the total and is said to wait for `fleet continue`."""
    timeline = predict(release_phases(BASE, NEW, strategy="canary", now=NOW), TUNED, base=BASE)
    hold = timeline.phases[1]
    assert hold.open_ended and hold.seconds == 0 and timeline.open_ended
    assert "until continue" in timeline.render() and "fleet continue" in timeline.render()


def test_standby_rollback_boots_nothing_and_beats_a_replace_rollback():
    """standby: rollback re-registers the warm group (health checks only); replace must boot again."""
    standby_end = release_phases(BASE, NEW, strategy="standby", now=NOW)[-1].state
    quick = predict_rollback(standby_end, TUNED, previous=BASE, now=NOW)
    assert [(p.name, p.seconds) for p in quick.phases] == [
        ("reactivate", EST.update_seconds + health(TUNED)),
        ("retire-current", drain_and_stop(TUNED)),
    ]
    assert all(step != "launch" for p in quick.phases for step, _ in p.steps)
    replace_end = release_phases(BASE, NEW, strategy="replace", now=NOW)[-1].state
    slow = predict_rollback(replace_end, TUNED, previous=BASE, now=NOW)
    assert [p.name for p in slow.phases] == ["rollback"]
    assert slow.phases[0].seconds - quick.phases[0].seconds == EST.launch_seconds + drain_and_stop(TUNED) - EST.update_seconds


def test_detach_drains_but_keeps_instances_running():
    """detach-old leaves the target group (drain) but its instances keep running as standby."""
    phases = release_phases(BASE, NEW, strategy="standby", now=NOW)
    detach = predict(phases, TUNED, base=BASE).phases[1]
    assert (detach.instances, detach.serving) == (6, 3)
    assert detach.seconds == EST.update_seconds + TUNED["deregistrationDelaySeconds"]


def test_aws_defaults_cost_the_difference_in_checks_and_drain():
    """The same release under AWS's defaults takes longer by exactly the extra checks and drain."""
    phases = release_phases(BASE, NEW, strategy="replace", now=NOW)
    extra = (health(AWS_DEFAULTS) - health(TUNED)) + (
        AWS_DEFAULTS["deregistrationDelaySeconds"] - TUNED["deregistrationDelaySeconds"]
    )
    tuned, slow = predict(phases, TUNED, base=BASE), predict(phases, AWS_DEFAULTS, base=BASE)
    assert slow.total_seconds - tuned.total_seconds == extra


def test_first_release_has_nothing_to_drain():
    """From an empty stack only the new group's launch and checks count; no base means empty."""
    timeline = predict(release_phases(ReleaseState(), NEW, strategy="canary", now=NOW), TUNED)
    assert [(p.name, p.seconds, p.peak) for p in timeline.phases] == [("replace", boot_and_check(TUNED), 3)]


def test_estimates_can_be_overridden_and_are_stated():
    """A slower application warm-up moves every booting phase, and the assumptions say what was used."""
    slow_boot = Assumptions(launch_seconds=300)
    phases = release_phases(BASE, NEW, strategy="replace", now=NOW)
    shift = predict(phases, TUNED, base=BASE, assumptions=slow_boot).total_seconds - predict(phases, TUNED, base=BASE).total_seconds
    assert shift == 300 - EST.launch_seconds
    stated = " ".join(predict(phases, TUNED, base=BASE, assumptions=slow_boot).assumptions)
    assert "5m00s" in stated and "2 checks 5s apart" in stated and "drains for 30s" in stated


def test_to_dict_is_stable_for_json_and_plan_files():
    """--json and plan files carry phases, total, peak and the assumptions under these keys."""
    data = predict(release_phases(BASE, NEW, strategy="standby", now=NOW), TUNED, base=BASE).to_dict()
    assert set(data) == {"phases", "total_seconds", "peak_instances", "open_ended", "assumptions"}
    assert set(data["phases"][0]) == {"name", "seconds", "instances", "serving", "peak_instances", "steps", "open_ended"}
    assert data["total_seconds"] == sum(p["seconds"] for p in data["phases"])
    assert data["phases"][0]["steps"][0] == {"step": "update", "seconds": EST.update_seconds}


def test_render_lists_each_phase_and_the_total():
    """People see every phase, its duration and the total in the preview."""
    timeline = predict(release_phases(BASE, NEW, strategy="replace", now=NOW), TUNED, base=BASE)
    text = timeline.render("release 2.0.0")
    assert text.splitlines()[0] == "release 2.0.0:"
    minutes, seconds = divmod(int(timeline.total_seconds), 60)
    assert f"total {minutes}m{seconds:02d}s" in text and f"at most {2 * TUNED['desiredCapacity']} instances" in text
    assert text.splitlines()[2].split()[0] == "replace"
    assert predict((), TUNED).render("rollback") == "rollback: nothing to do"


@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({k: v for k, v in TUNED.items() if k != "healthyThreshold"}, "lack 'healthyThreshold'"),
        ({**TUNED, "deregistrationDelaySeconds": "30"}, "deregistrationDelaySeconds '30' is invalid"),
    ],
)
def test_settings_missing_or_malformed_are_refused(settings, fragment):
    """A settings output without the figures cannot be predicted from: one line naming the key."""
    with pytest.raises(BadInput) as error:
        predict((), settings)
    assert fragment in error.value.reason
