"""`make help` lists every target the Makefile declares, each with a description."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_every_phony_target() -> None:
    makefile = (REPO / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split())  # type: ignore[union-attr]
    out = subprocess.run(
        ["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
    )
    listed = {m.group(1): m.group(2) for m in re.finditer(r"^make (\S+)\s+(.+)$", out.stdout, re.M)}
    assert set(listed) == phony, (
        f"not listed: {phony - set(listed)}; not declared .PHONY: {set(listed) - phony}"
    )
    assert all(len(text) > 10 for text in listed.values())
