"""gantry-node: a DICOM node that de-identifies in flight, and the same engine as a library."""

__version__ = "0.1.0"
