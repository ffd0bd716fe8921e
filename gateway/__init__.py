"""opencode-go gateway: one backend name for every OpenCode Go model, to OpenAI Chat, Anthropic
Messages and OpenAI Responses clients."""
# The one place the version is written (pyproject.toml reads it from here); it ends the
# User-Agent of every upstream call.
__version__ = "0.1.0"

from gateway.errors import GatewayError  # noqa: E402

__all__ = ["GatewayError", "__version__"]
