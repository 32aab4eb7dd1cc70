"""resp-bridge: unmodified Redis clients on an Upstash-compatible REST API."""

__version__ = "0.1.0"
