"""Which watch events count as drift of a child (to re-apply)."""

from higgs_operator.handlers import _edited
from higgs_operator.state import ChildInfo


def test_edited_detects_drift_per_kind():
    base = ChildInfo("apps/v1", "Deployment", "x", "ns", "h1", "10", 3)
    assert not _edited(
        "Deployment", base, ChildInfo("apps/v1", "Deployment", "x", "ns", "h1", "11", 3)
    )  # status
    assert _edited(
        "Deployment", base, ChildInfo("apps/v1", "Deployment", "x", "ns", "h1", "12", 4)
    )  # spec edit
    assert _edited(
        "Deployment", base, ChildInfo("apps/v1", "Deployment", "x", "ns", "h2", "12", 3)
    )  # our hash
    svc = ChildInfo("v1", "Service", "x", "ns", "h1", "10", None)
    assert _edited("Service", svc, ChildInfo("v1", "Service", "x", "ns", "h1", "11", None))
    assert not _edited("Service", svc, ChildInfo("v1", "Service", "x", "ns", "h1", "10", None))
