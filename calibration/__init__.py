"""Per-site calibration (`nerveseg calibrate`): where the ultrasound image sits in a machine's video out.

`calibration.detect` finds the image region and the burned-in UI to blank from a few
seconds of frames; `calibration.calibrate` grabs the frames and writes the site
profile (schema in `edge.profile`), the representative frames and a preview;
`calibration.cli` is the command. Runs on the device: numpy and OpenCV, no TensorFlow.
"""
