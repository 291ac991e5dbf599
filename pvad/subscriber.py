"""Alarm subscriber: follows `Alarms.Subscribe`, resuming after the last event id it saw."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import grpc

from pvad.v1 import pvad_pb2, pvad_pb2_grpc


async def follow_alarms(
    channel: grpc.aio.Channel,
    *,
    camera_ids: Iterable[str] = (),
    after_event_id: int = 0,
    include_scores: bool = False,
) -> AsyncIterator[pvad_pb2.AlarmEvent]:
    """Yield events as the server publishes them. Persisted events first (those after
    `after_event_id`), then live ones; pass the last `event_id` seen to resume with no gap."""
    stub = pvad_pb2_grpc.AlarmsStub(channel)
    request = pvad_pb2.SubscribeRequest(
        camera_ids=list(camera_ids), after_event_id=after_event_id, include_scores=include_scores
    )
    async for event in stub.Subscribe(request):
        yield event


def describe(event: pvad_pb2.AlarmEvent) -> str:
    kind = pvad_pb2.EventKind.Name(event.kind)
    head = f"[{event.camera_id}] seq={event.seq} score={event.score:.3f} σ={event.confidence:.3f}"
    if event.kind != pvad_pb2.SCORE:
        return f"{kind} #{event.event_id} {head}"
    if event.phase == pvad_pb2.LEARNING:
        return f"[{event.camera_id}] seq={event.seq} learning (no alarm decision)"
    if event.phase == pvad_pb2.SCORING:
        return f"{head} normality={event.normality_score:.3f}"
    return head
