"""Abnormal access detection: features, rules, the anomaly model, replay, evaluation, scenarios.

The gateway uses `Detector` (observe before forwarding, record after the response, batched
model scoring off the request path), `DetectionConfig` (the `detection` config section),
`load_configured_model` / `load_model` for the model file, and `Detection` for incidents.
"""

from detectors.config import DetectionConfig
from detectors.detection import Assessment, Detection, Evidence
from detectors.events import AccessEvent, event_from_dict, read_events
from detectors.model import DetectorModel, load_model
from detectors.online import Detector, ModelResult, load_configured_model

__all__ = [
    "AccessEvent",
    "Assessment",
    "Detection",
    "DetectionConfig",
    "Detector",
    "DetectorModel",
    "Evidence",
    "ModelResult",
    "event_from_dict",
    "load_configured_model",
    "load_model",
    "read_events",
]
