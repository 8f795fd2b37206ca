"""Incidents for SOC staff: built from detections and breaker actions, stored, sent to sinks."""
