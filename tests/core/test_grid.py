"""The grid song's one helper for what is in force at a bar or a step."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meloformer_core.encoding.grid import in_force


@given(st.lists(st.integers(0, 50), unique=True).map(sorted), st.integers(-5, 60))
def test_in_force_is_the_last_event_at_or_before(starts: list[int], at: int) -> None:
    events = [(start, f"event at {start}") for start in starts]
    earlier = [event for event in events if event[0] <= at]
    assert in_force(events, at) == (earlier[-1] if earlier else None)
