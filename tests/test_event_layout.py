"""The numpy mirror of struct st_event matches the C header, field by field."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tracer.events import EVENT_DTYPE, EVENT_VERSION, Point

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "bpf" / "event.h"


def _c_layout(tmp_path: Path) -> dict[str, tuple[int, int]]:
    fields = [n for n in EVENT_DTYPE.names]
    sub = ["saddr", "daddr", "sport", "dport"]
    lines = [f'P("{f}", {f});' for f in fields]
    lines += [f'P("{t}.{s}", {t}.{s});' for t in ("pkt", "orig", "reply") for s in sub]
    src = tmp_path / "layout.c"
    src.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n"
        f'#include "{HEADER}"\n'
        "#define P(n, f) printf(\"%s %zu %zu\\n\", n, offsetof(struct st_event, f), "
        "sizeof(((struct st_event *)0)->f))\n"
        "int main(void) {\n" + "\n".join(lines) +
        '\nprintf("SIZE %zu 0\\n", sizeof(struct st_event));\nreturn 0; }\n'
    )
    exe = tmp_path / "layout"
    subprocess.run(["cc", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {n: (int(o), int(s)) for n, o, s in (line.split() for line in out.splitlines())}


def test_struct_layout_matches_header(tmp_path: Path) -> None:
    c = _c_layout(tmp_path)
    assert c["SIZE"][0] == EVENT_DTYPE.itemsize
    for name in EVENT_DTYPE.names:
        dt, off = EVENT_DTYPE.fields[name][:2]
        assert c[name] == (off, dt.itemsize), name
        if dt.names:
            for sub in dt.names:
                sdt, soff = dt.fields[sub][:2]
                assert c[f"{name}.{sub}"] == (off + soff, sdt.itemsize), f"{name}.{sub}"


def test_version_and_points_match_header() -> None:
    text = HEADER.read_text()
    version = re.search(r"#define ST_EVENT_VERSION (\d+)", text)
    assert version and int(version.group(1)) == EVENT_VERSION
    for p in Point:
        m = re.search(rf"\bST_{p.name} = (\d+),", text)
        assert m, p.name
        assert int(m.group(1)) == p.value


@pytest.mark.parametrize("point", list(Point))
def test_every_point_has_a_label(point: Point) -> None:
    assert point.label


def test_dns_name_offset_is_orig_daddr(tmp_path: Path) -> None:
    from tracer.events import _DNS_NAME_OFFSET

    assert _c_layout(tmp_path)["orig.daddr"][0] == _DNS_NAME_OFFSET


def test_tuples_end_the_record(tmp_path: Path) -> None:
    """decode() reads pkt, orig and reply as one 36-byte block at the end of each record."""
    from tracer.events import _TUPLE_SIZE, _TUPLES_AT, EVENT_SIZE

    c = _c_layout(tmp_path)
    assert c["pkt"][0] == _TUPLES_AT and c["orig"][0] == _TUPLES_AT + _TUPLE_SIZE
    assert c["reply"] == (_TUPLES_AT + 2 * _TUPLE_SIZE, _TUPLE_SIZE)
    assert _TUPLES_AT + 3 * _TUPLE_SIZE == EVENT_SIZE
