"""The protocol between supervisor, template and workers: frames (sans-IO)
and the pipes they travel on.
"""
