"""`nerveseg review SESSION`: look at a recording again, export it, or re-run another model over it.

A session (see `edge.recording.session`) holds the ROI crops as captured, the network's masks
and one JSONL line per frame. Review re-draws the overlay from those with the live
overlay code: the recorded verdict, and the network's own mask of that frame (the
live outline was a running average of the last masks; the session's
``annotated.mp4`` keeps that one exactly).

- `play`: a window (needs an OpenCV build with a GUI, like the window sink), paced
  by the recorded capture times; ``q``/Esc quits.
- `export_session`: headless; writes ``contact_sheet.png``, ``clip.mp4`` (one frame
  per recorded frame) and ``detections.csv`` into a folder.
- `compare_session`: runs another ``.tflite`` over the recorded raw frames with the
  same preprocessing the live loop uses (`edge.preprocess`) and lists the frames where
  it disagrees with what the box said: a regression check on real recordings.

A session cut off by a crash or a full disk may miss an image a JSONL line names:
all three draw every frame they can read, skip the others with one warning naming
them, and count them (``skipped``): what was recorded around a lost frame is still
worth looking at, and a failed export would hide it. A damaged line of frames.jsonl
(not JSON, or fields of the wrong type) is skipped the same way (`Session.bad_lines`).

A session may come from anywhere (a USB stick, a colleague's archive), so nothing in
it is trusted: every file is read from inside the session folder (no absolute path,
no ``..``, no symbolic link, regular files only) and within a size bound; a path
that leads elsewhere is refused like an unreadable image, never followed.
"""

from edge.review.compare import (
    DEFAULT_DICE_THRESHOLD,
    CompareReport,
    compare_session,
    dice,
    format_compare,
    write_compare_csv,
)
from edge.review.read import (
    Session,
    frame_problem,
    load_session,
    manifest_problem,
    open_inside,
    read_inside,
    resolve_session,
)
from edge.review.show import ExportResult, _Renderer, contact_sheet, export_session, play

__all__ = [
    "DEFAULT_DICE_THRESHOLD", "CompareReport", "ExportResult", "Session", "_Renderer", "compare_session",
    "contact_sheet", "dice", "export_session", "format_compare", "frame_problem", "load_session",
    "manifest_problem", "open_inside", "play", "read_inside", "resolve_session", "write_compare_csv",
]
