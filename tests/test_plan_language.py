"""Plan language: round trips, grammar errors, validation against a scene."""

import pytest

from embodied.core.errors import IllegalStepError, PlanSyntaxError, UnknownObjectError
from embodied.core.plan import DONE, PlanStep, format_plan, parse_plan, parse_step, valid_steps, validate_step

GOOD = [
    "put red cube on blue cube",
    "put green cube in tray",
    "put green triangle in blue bin",
    "put red cylinder left of blue cube",
    "put red cylinder right of blue cube",
    "put red cube in front of yellow cylinder",
    "put purple triangle behind orange cube",
    "move yellow cube to top left",
    "move pink hexagon to center",
    "done",
]


@pytest.mark.parametrize("text", GOOD)
def test_round_trip(text):
    step = parse_step(text)
    assert step.text == text
    assert parse_step(step.text) == step


def test_normalises_case_and_spaces():
    assert parse_step("  PUT Red   cube ON blue cube ") == PlanStep("put", "red cube", "on", "blue cube")


def test_fields():
    s = parse_step("put red cube in front of blue cube")
    assert (s.verb, s.object, s.preposition, s.target) == ("put", "red cube", "in front of", "blue cube")
    assert parse_step("done") is DONE and DONE.is_done


@pytest.mark.parametrize(
    "bad, match",
    [
        ("", "empty"),
        ("jump over the moon", "unknown verb"),
        ("put red cube", "preposition"),
        ("put red cube on tray", "colour"),
        ("put gold cube in tray", "unknown colour 'gold'"),
        ("put red sphere in tray", "unknown shape 'sphere'"),
        ("put red cube in front blue cube", "tray"),
        ("move red cube to the moon", "unknown location"),
        ("put red cube on blue cube please", "trailing"),
        ("done now", "no arguments"),
    ],
)
def test_syntax_errors_are_named_and_helpful(bad, match):
    with pytest.raises(PlanSyntaxError, match=match):
        parse_step(bad)


def test_non_text_is_rejected():
    with pytest.raises(PlanSyntaxError):
        parse_step(None)  # type: ignore[arg-type]


def test_plan_round_trip():
    text = "put red cube on blue cube; put green cube in tray; done"
    steps = parse_plan(text)
    assert [s.text for s in steps] == ["put red cube on blue cube", "put green cube in tray", "done"]
    assert format_plan(steps) == text


def test_validate_against_scene():
    objects, containers = ["red cube", "blue cube"], ["tray"]
    validate_step(parse_step("put red cube on blue cube"), objects, containers)
    with pytest.raises(UnknownObjectError, match="no green cube"):
        validate_step(parse_step("put green cube on blue cube"), objects, containers)
    with pytest.raises(UnknownObjectError, match="red bin"):
        validate_step(parse_step("put red cube in red bin"), objects, containers)
    with pytest.raises(IllegalStepError, match="itself"):
        validate_step(parse_step("put red cube on red cube"), objects, containers)


def test_valid_steps_all_parse_and_validate():
    objects, containers = ["red cube", "blue cylinder", "green triangle"], ["tray", "red bin"]
    steps = valid_steps(objects, containers)
    assert len(steps) == len(set(steps))
    for text in steps:
        validate_step(parse_step(text), objects, containers)
    # 3 objects: 2 others x 5 object-relative preps + 2 containers + 7 locations each, plus done
    assert len(steps) == 3 * (2 * 5 + 2 + 7) + 1
