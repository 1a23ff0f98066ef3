"""callengine: run voice AI agents on live phone calls over WebSocket, with Trio."""

__version__ = "0.1.0"
