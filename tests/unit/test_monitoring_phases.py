"""The dashboard's recovery phases are the handler's: one list, read twice (roles/monitoring draws what
recovery/handler/boot_report.py publishes as PhaseSeconds)."""

import pathlib

import yaml

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.handler import PHASES

MONITORING_VARS = pathlib.Path(__file__).parents[2] / "roles" / "monitoring" / "vars" / "main.yml"


def test_the_dashboard_draws_every_phase_the_handler_publishes_in_its_order():
    drawn = yaml.safe_load(MONITORING_VARS.read_text(encoding="utf-8"))["monitoring_phases"]
    assert drawn == [phase for phase, _start, _end in PHASES]
