"""Every plan, budget result and latency-search result is the same as the one
recorded from the code before the planning layer existed
(tests/data/plan_recording.json, written by tools/record_plans.py; the cases
are in tests/plan_cases.py)."""
import json

import pytest

import plan_cases

RECORDED = json.loads(plan_cases.RECORDING.read_text())["cases"]
SLOW = {"mobilenet_v2/latency_uniform_050"}


@pytest.fixture(scope="module")
def built():
    return {}


def _same(got, want, where):
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), where
        for k in want:
            _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), where
    else:
        assert got == want, where


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(RECORDED)])
def test_plan_is_the_recorded_one(name, built, tmp_path):
    got = plan_cases.run_case(name, tmp_path, built)
    want = RECORDED[name]
    assert got["plan"] == want["plan"], f"{name}: the plan differs from the recording"
    _same(got["report"], want["report"], name)


def test_the_recording_covers_every_case():
    assert set(RECORDED) == set(plan_cases.CASES)
