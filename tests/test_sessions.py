"""The page-session store: the event log, acknowledgements and the frame sequence."""

from __future__ import annotations

import pytest

from wsse._sessions import FrameOutOfOrder, MemoryPageState, MemoryPageStore


def test_sessions_get_unguessable_distinct_ids() -> None:
    store = MemoryPageStore()
    pages = [store.create(key="k") for _ in range(100)]
    assert len({page.id for page in pages}) == 100
    assert all(page.key == "k" for page in pages)
    assert all(len(page.id) >= 22 for page in pages)  # 128 bits in base64
    assert store.get(pages[0].id) is pages[0]
    store.remove(pages[0].id)
    assert store.get(pages[0].id) is None
    assert store.get("guess") is None


def test_the_log_replays_what_follows_an_id_and_forgets_what_is_acknowledged() -> None:
    page = MemoryPageState("s", "k")
    encoded = [page.append(b"text", b'{"n":%d}' % n) for n in range(5)]
    assert page.events_after(0) == encoded
    assert page.events_after(3) == encoded[3:]
    assert page.events_after(5) == []
    assert page.unacknowledged == sum(map(len, encoded))
    page.acknowledge(2)
    assert page.unacknowledged == sum(map(len, encoded[2:]))
    assert page.events_after(2) == encoded[2:]
    # Resuming from before what was dropped is a gap; from the future, nonsense.
    assert page.events_after(1) is None
    assert page.events_after(6) is None


def test_acknowledgements_never_move_back_and_cannot_pass_the_last_event() -> None:
    page = MemoryPageState("s", "k")
    for n in range(3):
        page.append(b"text", b"%d" % n)
    page.acknowledge(2)
    page.acknowledge(1)  # an older acknowledgement, arriving late
    assert page.events_after(2) is not None
    page.acknowledge(99)
    assert page.unacknowledged == 0
    assert page.events_after(3) == []
    later = page.append(b"text", b"3")
    assert page.events_after(3) == [later]


def test_frames_are_applied_once_in_order() -> None:
    page = MemoryPageState("s", "k")
    assert page.expected_seq == 0
    assert page.accept(0) and page.accept(1)
    assert not page.accept(0)  # a retried frame
    with pytest.raises(FrameOutOfOrder):
        page.accept(5)
    assert page.expected_seq == 2
