"""The spool is the system of record: these tests exercise real files, real processes and real kill -9."""

from __future__ import annotations

import errno
import gzip
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from pipelines import spool
from pipelines.spool import (
    Record,
    SpoolBatch,
    SpoolError,
    SpoolLockedError,
    SpoolReader,
    SpoolWriter,
)

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parent.parent


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("*.seg"))


def drain(d: Path, *, commit: bool = True, max_records: int = 50_000) -> list[Record]:
    with SpoolReader(d) as reader:
        out: list[Record] = []
        for batch in reader.batches(max_records):
            out += batch.records
            if commit:
                reader.commit(batch.cursor)
        return out


def event(i: int, payload: bytes | None = None, conn: str = "conn_1") -> Record:
    return Record("event", conn, 1_700_000_000_000_000 + i, payload or f'{{"n":{i}}}'.encode(), f"m-{i}")


def run_python(code: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_round_trip_keeps_exact_bytes_and_order(tmp_path: Path) -> None:
    records = [
        Record("event", "conn_ü", 1, '{"name":"Zoë 😀","x":"\\u0000"}'.encode(), "mid-é"),
        Record("rejected", "conn_ü", 2, bytes(range(256)) * 3, None, "not JSON: ünïcode reason"),
        Record("rejected", "c", -5, b"", None, ""),  # empty payload, empty reason, pre-epoch time
        Record("event", "c", 2**62, b"\xff\xfe\x00{", None, None),
        *(event(i) for i in range(100)),
    ]
    with SpoolWriter(tmp_path) as w:
        w.append(records[:3])
        w.append(records[3:])
    assert drain(tmp_path) == records


def test_records_larger_than_the_read_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "READ_CHUNK", 100)
    records = [event(0, b"a" * 300_000), *(event(i) for i in range(1, 20)), event(20, b"b" * 1000)]
    with SpoolWriter(tmp_path) as w:
        w.append(records)
    with SpoolReader(tmp_path) as reader:
        batches = list(reader.batches(max_records=3))
    assert [len(b.records) for b in batches] == [3] * 7
    assert [r for b in batches for r in b.records] == records


def test_resumes_at_committed_cursor_and_rereads_uncommitted(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        w.append([event(i) for i in range(25)])
    with SpoolReader(tmp_path) as reader:
        batches = list(reader.batches(max_records=10))
        assert [len(b.records) for b in batches] == [10, 10, 5]
        reader.commit(batches[1].cursor)
        reader.commit(batches[0].cursor)  # an older cursor never moves progress back
    assert [r.received_at_us % 1000 for r in drain(tmp_path, commit=False)] == list(range(20, 25))
    # That reader did not commit: the next one sees the same records again.
    assert len(drain(tmp_path)) == 5
    assert drain(tmp_path) == []


def test_only_one_reader_at_a_time_but_stats_need_no_lock(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        w.append([event(i) for i in range(3)])
    with SpoolReader(tmp_path) as first:
        next(first.batches())
        with pytest.raises(SpoolLockedError):
            next(SpoolReader(tmp_path).batches())
        stats = SpoolReader(tmp_path).stats()
        assert (stats.segments, stats.pending_records) == (1, 3)
        assert stats.oldest_pending_received_at_us == event(0).received_at_us
    assert len(drain(tmp_path)) == 3  # the lock went with the first reader


def test_stats_before_and_after_commit(tmp_path: Path) -> None:
    assert SpoolReader(tmp_path / "missing").stats() == spool.SpoolStats(0, 0, 0, None)
    with SpoolWriter(tmp_path, max_segment_bytes=5_000) as w:
        for i in range(100):
            w.append([event(i, b"p" * 100)])
    stats = SpoolReader(tmp_path).stats()
    assert stats.segments > 1
    assert stats.pending_records == 100
    assert stats.pending_bytes > 100 * 100
    drain(tmp_path)
    assert SpoolReader(tmp_path).stats() == spool.SpoolStats(0, 0, 0, None)


WRITER = """
import sys, threading
from pathlib import Path
from pipelines.spool import Record, SpoolWriter
d, wid, threads, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with SpoolWriter(d, max_segment_bytes=20_000) as w:
    def run(t):
        for i in range(n):
            w.append([Record("event", wid, i, f"{wid} {t} {i} {j}".encode(), f"{i}-{j}") for j in range(1 + i % 3)])
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
"""


def test_concurrent_writer_processes_each_record_read_exactly_once(tmp_path: Path) -> None:
    procs = [run_python(WRITER, str(tmp_path), f"w{k}", "4", "100") for k in range(3)]
    seen: list[tuple[str, ...]] = []
    with SpoolReader(tmp_path) as reader:
        # Read and commit while the writers run: live segments, in-progress tails and rotations all happen.
        while any(p.poll() is None for p in procs):
            for batch in reader.batches(max_records=500):
                seen += [tuple(r.payload.decode().split()) for r in batch.records]
                reader.commit(batch.cursor)
            time.sleep(0.02)
        for p in procs:
            assert p.wait(timeout=30) == 0, p.stderr.read() if p.stderr else ""
        for batch in reader.batches():
            seen += [tuple(r.payload.decode().split()) for r in batch.records]
            reader.commit(batch.cursor)
    expected = {
        (f"w{k}", str(t), str(i), str(j))
        for k in range(3)
        for t in range(4)
        for i in range(100)
        for j in range(1 + i % 3)
    }
    counts = Counter(seen)
    assert set(counts) == expected
    assert max(counts.values()) == 1
    # Each writer thread's records come back in the order it appended them.
    by_thread: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for w, t, i, j in seen:
        by_thread.setdefault((w, t), []).append((int(i), int(j)))
    assert all(v == sorted(v) for v in by_thread.values())
    assert segments(tmp_path) == []  # every segment was sealed and consumed


def test_torn_tail_of_a_live_segment_is_not_committed_past(tmp_path: Path) -> None:
    w = SpoolWriter(tmp_path)
    w.append([event(i) for i in range(5)])
    (seg,) = segments(tmp_path)
    full = seg.stat().st_size
    os.truncate(seg, full - 3)  # as if the last record were still being written
    with SpoolReader(tmp_path) as reader:
        (batch,) = list(reader.batches())
        assert batch.records == [event(i) for i in range(4)]
        (pos,) = dict(batch.cursor.positions).values()
        assert pos < full - 3
        reader.commit(batch.cursor)
        assert list(reader.batches()) == []  # retried, still incomplete: nothing yielded, nothing skipped
        assert orjson.loads((tmp_path / "cursor.json").read_bytes())["positions"] == {seg.name: pos}
    assert segments(tmp_path) == [seg]  # the writer still holds it
    w.close()
    # Sealed now: the torn tail is garbage, and the segment goes once everything before it is committed.
    assert drain(tmp_path) == []
    assert segments(tmp_path) == []


def test_garbage_after_the_last_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    w = SpoolWriter(tmp_path)
    w.append([event(i) for i in range(5)])
    (seg,) = segments(tmp_path)
    end = seg.stat().st_size
    with seg.open("ab") as f:
        f.write(b"\x00\x00garbage" * 5)
    with SpoolReader(tmp_path) as reader:
        (batch,) = list(reader.batches())
        assert batch.records == [event(i) for i in range(5)]
        assert dict(batch.cursor.positions) == {seg.name: end}
        reader.commit(batch.cursor)
        assert segments(tmp_path) == [seg]
        w.close()
        with caplog.at_level(logging.WARNING, logger="pipelines.spool"):
            assert list(reader.batches()) == []
        assert "torn tail" in caplog.text
    assert segments(tmp_path) == []


def test_corruption_inside_a_sealed_segment_skips_only_the_damaged_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = [event(i, f"payload-{i:04d}".encode() * 10) for i in range(10)]
    with SpoolWriter(tmp_path) as w:
        w.append(records)
    (seg,) = segments(tmp_path)
    data = bytearray(seg.read_bytes())
    at = data.index(b"payload-0004")
    data[at] ^= 0xFF
    seg.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="pipelines.spool"):
        assert drain(tmp_path) == records[:4] + records[5:]
    assert "corrupt bytes" in caplog.text
    (kept,) = (tmp_path / "corrupt").iterdir()
    assert b"ayload-0004" in kept.read_bytes()


CRASHER = """
import sys
from pathlib import Path
from pipelines.spool import Record, SpoolWriter
w = SpoolWriter(Path(sys.argv[1]), max_segment_bytes=50_000)
batch = 0
while True:
    w.append([Record("event", "c", batch, f"{batch} {j}".encode() + b" " * 200, None) for j in range(10)])
    print(batch, flush=True)
    batch += 1
"""


def test_kill_9_loses_nothing_that_was_acknowledged(tmp_path: Path) -> None:
    proc = run_python(CRASHER, str(tmp_path))
    assert proc.stdout is not None
    printed: list[int] = []
    buf = b""
    deadline = time.monotonic() + 20
    try:
        while len(printed) < 200 and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 1)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                printed += [int(x) for x in lines]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert len(printed) >= 200, proc.stderr.read() if proc.stderr else ""
    got = Counter(int(r.payload.split()[0]) for r in drain(tmp_path))
    assert all(got[b] == 10 for b in printed)
    assert segments(tmp_path) == []  # the dead writer's segments are sealed, so consumed ones are gone


def test_segments_are_deleted_only_when_sealed_and_committed(tmp_path: Path) -> None:
    live = SpoolWriter(tmp_path)
    live.append([event(0, conn="live")])
    with SpoolWriter(tmp_path) as done:
        done.append([event(1, conn="done")])
    rotating = SpoolWriter(tmp_path, max_segment_bytes=300)
    for i in range(4):
        rotating.append([event(10 + i, b"r" * 200, conn="rot")])
    before = segments(tmp_path)
    assert len(before) == 6

    with SpoolReader(tmp_path) as reader:
        (batch,) = list(reader.batches())
        assert len(batch.records) == 6
        assert segments(tmp_path) == before  # read but not committed: nothing goes
        reader.commit(batch.cursor)
        remaining = segments(tmp_path)
        # Left: the live writer's segment and the rotating writer's current one.
        assert len(remaining) == 2
        assert {r.connection_id for r in drain_names(tmp_path, remaining)} == {"live", "rot"}

        live.append([event(2, conn="live")])
        (batch,) = list(reader.batches())
        assert batch.records == [event(2, conn="live")]
        reader.commit(batch.cursor)
        assert segments(tmp_path) == remaining
        live.close()
        rotating.close()
        assert list(reader.batches()) == []  # nothing to load, but sealed and consumed: tidied away
    assert segments(tmp_path) == []


def drain_names(d: Path, segs: list[Path]) -> list[Record]:
    """The first record of each given segment, read straight from the file."""
    out: list[Record] = []
    for seg in segs:
        columns = spool.Columns()
        spool._parse(seg.read_bytes(), spool.HEADER, columns, 1, {})
        out += columns.records()
    return out


def test_failed_fsync_raises_spool_error_then_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fdatasync
    w = SpoolWriter(tmp_path)
    w.append([event(0)])

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(SpoolError) as info:
        w.append([event(1), event(2)])
    assert info.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "fdatasync", real)
    w.append([event(3)])
    w.close()
    assert len(segments(tmp_path)) == 2  # the failed segment was abandoned for a fresh one
    assert drain(tmp_path) == [event(0), event(3)]


def test_partial_write_leaves_no_torn_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = os.write
    w = SpoolWriter(tmp_path)
    w.append([event(0)])

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 100:
            return real(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(SpoolError):
        w.append([event(1, b"x" * 1000)])
    monkeypatch.setattr(os, "write", real)
    w.append([event(2)])
    w.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipelines.spool"):
        assert drain(tmp_path) == [event(0), event(2)]
    assert caplog.text == ""  # the partial record was cut, not left for the reader to skip


def test_one_fsync_per_append_of_many_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fdatasync
    calls: list[int] = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
    with SpoolWriter(tmp_path) as w:
        w.append([event(i) for i in range(1000)])
    assert len(calls) == 1


def test_group_commit_shares_an_fsync_and_its_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fdatasync
    calls: list[int] = []
    release = threading.Event()

    def gated(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            assert release.wait(10)
            real(fd)
        elif len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        else:
            real(fd)

    w = SpoolWriter(tmp_path)
    w.append([event(0)])  # opens the segment before the gate is in place
    monkeypatch.setattr(os, "fdatasync", gated)
    errors: dict[int, BaseException | None] = {}

    def append(i: int) -> None:
        try:
            w.append([event(i)])
            errors[i] = None
        except BaseException as e:
            errors[i] = e

    first = threading.Thread(target=append, args=(1,))
    first.start()
    while not calls:
        time.sleep(0.001)
    followers = [threading.Thread(target=append, args=(i,)) for i in (2, 3, 4)]
    for t in followers:
        t.start()
    deadline = time.monotonic() + 10
    while not (w._pending and len(w._pending.chunks) == 3) and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for t in (first, *followers):
        t.join(10)
    # The first caller's fsync, one failing fsync for the three that waited, and the cleanup of that failure.
    assert len(calls) == 3
    assert errors[1] is None
    assert all(isinstance(errors[i], SpoolError) for i in (2, 3, 4))
    w.append([event(5)])
    w.close()
    assert drain(tmp_path) == [event(0), event(1), event(5)]


def test_batch_is_a_plain_value(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        w.append([event(0)])
    with SpoolReader(tmp_path) as reader:
        (batch,) = list(reader.batches())
    assert isinstance(batch, SpoolBatch)
    assert batch.records == [event(0)]
    hash(batch.cursor)  # immutable, so safe to keep around until the load commits


def test_refuses_a_segment_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "0000000000000001-1-abcd.seg").write_bytes(b"SASPOOL\x09" + b"future")
    with pytest.raises(SpoolError, match="version"), SpoolReader(tmp_path) as reader:
        list(reader.batches())
    assert segments(tmp_path)  # never deleted


def test_loaded_segments_are_archived_and_expire_after_the_retention(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as writer:
        writer.append([event(1)])
    (name,) = [path.name for path in segments(tmp_path)]
    with SpoolReader(tmp_path, keep_loaded_days=2) as reader:
        (batch,) = list(reader.batches())
        reader.commit(batch.cursor)
    archived = tmp_path / spool.LOADED_DIR / f"{name}{spool.ARCHIVE_SUFFIX}"
    assert segments(tmp_path) == [] and archived.exists()
    restored = tmp_path / "restored"
    restored.mkdir()
    (restored / name).write_bytes(gzip.decompress(archived.read_bytes()))
    assert [r.payload for r in drain(restored)] == [event(1).payload]

    three_days_ago = time.time() - 3 * 86400
    os.utime(archived, (three_days_ago, three_days_ago))
    with SpoolWriter(tmp_path) as writer:
        writer.append([event(2)])
    with SpoolReader(tmp_path, keep_loaded_days=2) as reader:
        (batch,) = list(reader.batches())
        reader.commit(batch.cursor)
    assert not archived.exists(), "older than the retention: deleted"
    assert len(list((tmp_path / spool.LOADED_DIR).glob("*.gz"))) == 1, "the new one is kept"
