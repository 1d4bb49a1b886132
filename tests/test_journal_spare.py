"""Spare journal segments: made by the writer thread without its lock, taken by a rotation."""

from __future__ import annotations

from pathlib import Path

from tether.core import new_span_id, now_ns
from tether.store import SpanRecord
from tether.trace.journal import SPAN, Journal, encode, orphaned_segments


def _line(i: int) -> bytes:
    start = now_ns()
    span = SpanRecord("t" * 32, new_span_id(), None, f"s{i}", "tool", start, start, run_id="r" * 16)
    return encode(SPAN, span)[0]


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "store.json")


def test_a_rotation_takes_the_spare_in_sequence(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", segment_bytes=4096)
    journal.append(_line(0))
    spare = journal.spare()
    # Not in the journal yet: never taken for a dead writer's segment.
    assert spare.path.name.endswith(".creating")
    # The current segment fills meanwhile: the segment it opens comes before the spare.
    while not journal._full:  # white box: the current segment must overflow
        journal.append(_line(1))
    overflow = journal.current
    taken = journal.rotate(spare)
    assert overflow in taken
    assert journal.current is spare and spare.path.name.endswith(".journal")
    names = [s.path.name for s in (*taken, journal.current)]
    assert names == sorted(names)  # replay order is the order they were written in
    for segment in taken:
        segment.discard()
    journal.close()


def test_a_spare_swept_away_meanwhile_is_replaced(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(_line(0))
    spare = journal.spare()
    spare.path.unlink()  # as another process's sweep of stale '.creating' files would
    taken = journal.rotate(spare)
    assert journal.current is not spare and journal.current.path.exists()
    assert len(taken) == 1 and taken[0].records == 1
    for segment in taken:
        segment.discard()
    journal.close()
    assert _names(tmp_path / "j") == []


def test_an_unused_spare_leaves_nothing_to_replay(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    spare = journal.spare()
    Journal.drop_spare(spare)
    journal.close()  # empty: deleted
    assert _names(tmp_path / "j") == []
    assert list(orphaned_segments(tmp_path / "j")) == []
