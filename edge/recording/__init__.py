"""Recording for review: keep what the box saw, off the hot path, within a disk quota.

- `edge.recording.recorder`: `Recorder`, the live loop's observer that wires the rest.
- `edge.recording.trigger`: when to record (pre-roll, post-roll, splits, manual toggle): pure rules.
- `edge.recording.session`: the on-disk session format; all that `edge.review` reads.
- `edge.recording.worker`: the writer thread's side: the trigger's actions carried out as session files.
- `edge.recording.files`: writing one session's files.
- `edge.recording.writer`: the writer thread and its bounded queue (drops counted, never waited for).
- `edge.recording.storage`: quota, age limit, free space, the full-disk reserve.
- `edge.recording.mp4index`: frames of a finalised MP4, read from its index.
"""
