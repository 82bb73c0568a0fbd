"""Logging: one layout and its renderers, the never-blocking writer, the
stdlib handler a worker installs, structlog for the runtime's own records,
and the platform's telemetry fd.
"""
