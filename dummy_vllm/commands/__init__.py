"""Command-line sub-apps that the main ``dummy-vllm`` CLI mounts."""

from .sessions import sessions_app

__all__ = ["sessions_app"]
