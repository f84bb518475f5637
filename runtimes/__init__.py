"""edge_askd_runtime: the torch-free device runtime (numpy + one inference runtime + sounddevice).

Installed as the import package `edge_askd_runtime` (source folder `runtimes/`).
"""

from .audio import SAMPLE_RATE, load_audio
from .errors import AudioError, EdgeAskdError, ModelError
from .features import log_mel
from .results import Segment, Transcription
from .transcriber import Transcriber

__all__ = [
    "SAMPLE_RATE",
    "AudioError",
    "EdgeAskdError",
    "ModelError",
    "Segment",
    "Transcriber",
    "Transcription",
    "load_audio",
    "log_mel",
]
