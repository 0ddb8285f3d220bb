"""DICOM networking: the C-STORE SCP that receives, and the SCU that forwards."""

from pynetdicom import _config

# pynetdicom's standard event handlers format an INFO line for every PDU and DIMSE message
# (and copy each received data set to see whether it is empty) even though nothing in the
# node shows pynetdicom's INFO logs: about a millisecond per instance on each side. The
# node's own audit log records associations and instances.
_config.LOG_HANDLER_LEVEL = "none"
