"""Event log and alarm hub: persisted before published, resume by id, camera filters, slow subscribers
(backlog then live events, on both stores: tests/test_store.py)."""

import asyncio

from analysis_server.alarms import AlarmHub, EventLog
from pvad.v1 import pvad_pb2

from conftest import run

RAISED, CLEARED = pvad_pb2.ALARM_RAISED, pvad_pb2.ALARM_CLEARED


def test_event_log_survives_reopen(tmp_path):
    log = EventLog(tmp_path / "e.sqlite")
    a = log.append(camera_id="c1", kind=RAISED, seq=5, score=0.7, confidence=0.9)
    log.append(camera_id="c2", kind=RAISED, seq=6, score=0.6, confidence=0.8)
    log.close()
    again = EventLog(tmp_path / "e.sqlite")
    assert again.last_id() == 2
    assert [e.camera_id for e in again.since(0)] == ["c1", "c2"]
    assert [e.seq for e in again.since(a.event_id)] == [6]
    assert [e.seq for e in again.since(0, ["c1"])] == [5]


def test_slow_subscriber_loses_scores_not_alarms(tmp_path):
    async def scenario():
        hub = AlarmHub(EventLog(tmp_path / "e.sqlite"), queue_size=4)
        gen = hub.subscribe(after_event_id=0, include_scores=True)
        first = asyncio.create_task(gen.__anext__())
        await asyncio.sleep(0.05)
        for seq in range(100):  # nobody reads: the bounded queue overflows
            hub.publish_score(camera_id="c1", seq=seq, score=0.1, confidence=0.1)
        await hub.publish_alarm(camera_id="c1", kind=RAISED, seq=100, score=0.6, confidence=1)
        events = [await first]
        while True:
            ev = await asyncio.wait_for(gen.__anext__(), 2)
            events.append(ev)
            if ev.kind == RAISED:
                break
        await gen.aclose()
        return events

    events = run(scenario())
    scores = [e for e in events if e.kind == pvad_pb2.SCORE]
    assert len(scores) <= 4  # bounded: the other 96 were dropped, not buffered
    assert events[-1].kind == RAISED and events[-1].seq == 100
