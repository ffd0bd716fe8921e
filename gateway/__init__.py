"""opencode-go gateway: one backend name for every OpenCode Go model, to OpenAI Chat, Anthropic
Messages and OpenAI Responses clients."""
from gateway.errors import GatewayError

__all__ = ["GatewayError"]
