"""What the admin page's counts cost the receiver's hot path.

The receiver appends each request's records to the spool (write + fdatasync) and then notes them in the activity
recorder (dictionary updates; the SQLite write happens in a background thread about once a second). This times
the same appends with and without the recorder, alternating rounds so both see the same machine load, and prints
the ratio. Also the recorder's own cost per record, without the spool.

    .venv/bin/python bench/bench_activity.py [--requests 2000] [--events 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from pipelines.activity import ActivityRecorder, RecordingWriter
from pipelines.spool import Record, SpoolWriter


def records(n: int, start: int) -> list[Record]:
    now = time.time_ns() // 1000
    return [
        Record(
            "event",
            "c0ffee",
            now,
            json.dumps({"type": "track", "event": "Viewed", "userId": f"u{i}", "messageId": f"m{start + i}"}).encode(),
            f"m{start + i}",
        )
        for i in range(n)
    ]


def timed(folder: Path, requests: list[list[Record]], with_recorder: bool) -> float:
    spool = SpoolWriter(folder / "spool")
    recorder = ActivityRecorder(folder) if with_recorder else None
    writer = RecordingWriter(spool, recorder) if recorder is not None else spool
    started = time.perf_counter()
    for batch in requests:
        writer.append(batch)
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--events", type=int, default=10, help="events per request")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    requests = [records(args.events, i * args.events) for i in range(args.requests)]
    plain, recorded = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            plain.append(timed(Path(tmp) / f"p{round_}", requests, False))
            recorded.append(timed(Path(tmp) / f"r{round_}", requests, True))
        recorder = ActivityRecorder(Path(tmp) / "alone", flush_seconds=3600)
        started = time.perf_counter()
        for batch in requests:
            recorder.record(batch)
        alone = time.perf_counter() - started
        recorder.close()
    base, with_counts = statistics.median(plain), statistics.median(recorded)
    total = args.requests * args.events
    print(f"{args.requests} appends of {args.events} events, median of {args.rounds} alternating rounds:")
    print(f"  spool only            {base:.3f} s  (1.00)")
    print(f"  spool + activity      {with_counts:.3f} s  ({with_counts / base:.2f} x spool only)")
    print(f"  recorder alone        {alone / total * 1e6:.2f} us per event ({alone / base:.3f} x spool only)")


if __name__ == "__main__":
    main()
