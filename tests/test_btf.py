"""Drop reason names read from the running kernel's BTF without bpftool, checked against it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tracer.probes import btf

pytestmark = pytest.mark.skipif(not btf.VMLINUX_BTF.exists(), reason="kernel has no BTF")


def test_drop_reasons_match_bpftool() -> None:
    reasons = btf.drop_reasons()
    assert reasons[2] == "NOT_SPECIFIED"
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed: nothing to compare with")
    dump = subprocess.run(["bpftool", "btf", "dump", "file", str(btf.VMLINUX_BTF), "format", "c"],
                          capture_output=True, text=True, check=True).stdout
    enum = re.search(r"enum skb_drop_reason \{(.*?)\};", dump, re.S)
    assert enum is not None
    expected = {int(code): name for name, code in
                re.findall(r"SKB_DROP_REASON_(\w+) = (\d+),", enum.group(1))
                if int(code) < btf.MAX_CORE_REASON}
    assert {i: r for i, r in enumerate(reasons) if i in expected} == expected


def test_no_btf_gives_no_names(tmp_path: Path) -> None:
    assert btf.drop_reasons(tmp_path / "missing") == ()
