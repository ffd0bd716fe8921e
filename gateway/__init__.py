"""opencode-go gateway: one backend name for every OpenCode Go model, to OpenAI and Anthropic clients."""
from gateway.errors import GatewayError

__all__ = ["GatewayError"]
