"""run_check: the `chatops policy check` entry point's exit codes and output."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest

from chatops.policy.check import routing_gaps, run_check
from chatops.policy.loader import load_policy

SHIPPED = Path(__file__).resolve().parents[2] / "policy"


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "policy"
    copy.mkdir()
    for name in ("severity.yaml", "services.yaml"):
        shutil.copy(SHIPPED / name, copy / name)
    return copy


def check(directory: Path, baseline: Path | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_check(directory, out, err, baseline=baseline)
    return code, out.getvalue(), err.getvalue()


def test_shipped_policy_passes() -> None:
    code, out, err = check(SHIPPED)
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert re.fullmatch(r"policy OK: 3 severities, 3 services \(digest [0-9a-f]{12}\)", lines[0])
    assert lines[0].endswith(f"(digest {load_policy(SHIPPED).digest[:12]})")
    assert "note: sev1 pages ciso, but no service routes it" in lines
    assert "note: sev1 pages manager, but rider-pos, auth do not route it" in lines


def test_invalid_policy_prints_every_problem(policy_dir: Path) -> None:
    path = policy_dir / "severity.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("urgency: low", "urgency: urgent"), encoding="utf-8")
    services = policy_dir / "services.yaml"
    services.write_text(services.read_text(encoding="utf-8").replace("P5AUTH1", "auth-primary"), encoding="utf-8")
    code, out, err = check(policy_dir)
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"severity\.yaml:\d+:\d+: severities\.sev3\.urgency: .*got 'urgent'", lines[0])
    assert re.fullmatch(r"services\.yaml:\d+:\d+: services\.auth\.pagerduty\.primary: .*got 'auth-primary'", lines[1])
    assert lines[2] == f"policy check failed: 2 problems in {policy_dir}"


def test_missing_directory(tmp_path: Path) -> None:
    code, out, err = check(tmp_path / "absent")
    assert out == ""
    assert code == 1
    assert err.splitlines() == [
        f"{tmp_path / 'absent'}: policy directory not found",
        f"policy check failed: 1 problem in {tmp_path / 'absent'}",
    ]


def test_diff_against_a_baseline(policy_dir: Path) -> None:
    path = policy_dir / "severity.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("page: [primary, secondary, cs_lead]", "page: [primary, secondary, cs_lead, db_sme]"),
        encoding="utf-8",
    )
    code, out, _ = check(policy_dir, baseline=SHIPPED)
    assert code == 0
    assert out.splitlines()[-2:] == [f"changes from {SHIPPED}:", "  sev2 now also pages db_sme"]
    code, out, _ = check(SHIPPED, baseline=SHIPPED)
    assert out.splitlines()[-1] == f"no changes from {SHIPPED}"


def test_invalid_baseline_still_passes(policy_dir: Path, tmp_path: Path) -> None:
    code, _, err = check(policy_dir, baseline=tmp_path / "absent")
    assert code == 0
    assert "cannot diff" in err


def test_routing_gaps_none_when_every_service_routes_every_role(policy_dir: Path) -> None:
    path = policy_dir / "severity.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("page: [primary, secondary, manager, vp_eng, ciso]", "page: [primary]"), encoding="utf-8"
    )
    assert routing_gaps(load_policy(policy_dir)) == []
