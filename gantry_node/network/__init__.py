"""DICOM networking: the C-STORE SCP that receives, and the SCU that forwards."""
