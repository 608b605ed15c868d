"""Live MIDI output: ports (and, next, the scheduler that plays a `Song`). No Qt, no torch."""
