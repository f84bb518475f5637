"""edge_askd_runtime.server: the Wyoming (Home Assistant) and OpenAI-compatible HTTP servers, torch-free.

    edge-askd serve --model EXPORT_DIR --wyoming tcp://0.0.0.0:10300 --http 0.0.0.0:8000

core.py: the loaded model behind a bounded executor, limits, errors, the request log line; wyoming_server.py and
http_server.py: the two protocols; run.py: both in one asyncio loop, and the clean shutdown. The protocol packages
(wyoming, starlette, uvicorn, python-multipart: the `server` extra) are imported only when a server starts.
"""

from .core import DEFAULT_MAX_BYTES, DEFAULT_MAX_SECONDS, Engine, ModelInfo, RequestError, ServeConfig
from .run import check_dependencies, serve

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SECONDS",
    "Engine",
    "ModelInfo",
    "RequestError",
    "ServeConfig",
    "check_dependencies",
    "serve",
]
