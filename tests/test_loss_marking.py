"""Requests in flight when the kernel lost events are marked incomplete, not shown as whole:
a recorded trace (tests/fixtures/lab_mesh_vip.swt) written again with a lost-events record in
the middle of one of its requests, then replayed through the one pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracer.tracefile import open_trace
from tracer.tracefile.requests import trace_requests
from tracer.tracefile.writer import TraceWriter

FIXTURE = Path(__file__).parent / "fixtures" / "lab_mesh_vip.swt"


def test_requests_in_flight_at_a_loss_are_marked_incomplete(tmp_path: Path) -> None:
    whole = trace_requests(FIXTURE)
    assert whole and not any(r.missing for r in whole)
    with open_trace(FIXTURE, report=False) as reader:
        header, topology = reader.header, reader.topology()
        events = np.concatenate(list(reader.events()))
    # Lose events in the middle of a request that has others before it.
    cut_req = whole[len(whole) // 2]
    cut_ts = (cut_req.start_ns + cut_req.end_ns) // 2
    cut = int(np.searchsorted(events["ts_ns"], cut_ts))
    path = tmp_path / "lossy.swt"
    with TraceWriter(path, header) as w:
        for rec in topology:
            w.topology(rec.ts_ns, rec.data, snapshot=rec.kind == "snapshot")
        w.events(events[:cut])
        w.flush()
        w.lost(37, ts_ns=cut_ts)
        w.events(events[cut:])
    got = trace_requests(path)
    assert [r.client for r in got] == [r.client for r in whole]  # the same requests
    marked = [r for r in got if r.missing]
    note = "37 events lost in the kernel while it was in flight (ring buffer full): hops may " \
        "be missing"
    print(f"loss marking: {len(marked)} of {len(got)} requests marked")
    assert marked and all(r.missing == [note] for r in marked)
    assert cut_req.client in {r.client for r in marked}
    # Requests over before the loss are whole.
    before = [r for r in got if r.end_ns and r.end_ns < events["ts_ns"][cut - 1]]
    assert before and not any(r.missing for r in before)
    js = next(r for r in marked if r.client == cut_req.client).to_json()
    assert js["incomplete"] is True and js["missing"] == [note]
