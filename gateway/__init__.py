"""opencode-go gateway: one backend name for every OpenCode Go model, to OpenAI Chat, Anthropic
Messages and OpenAI Responses clients."""
from importlib.metadata import PackageNotFoundError, version

from gateway.errors import GatewayError

try:
    __version__ = version("opencode-gateway")
except PackageNotFoundError:  # a checkout run without `pip install -e .`
    __version__ = "0.0.0+checkout"

__all__ = ["GatewayError", "__version__"]
