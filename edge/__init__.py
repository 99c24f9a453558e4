"""nerveseg device runtime: capture -> preprocess -> int8 TFLite -> overlay -> sink.

Nothing in this package imports TensorFlow; the device needs only numpy, OpenCV,
PyYAML, pydantic and a TFLite interpreter.
"""

__version__ = "0.1.0"
