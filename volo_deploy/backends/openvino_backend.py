"""OpenVINO IR backend (implemented in the OpenVINO issue)."""
