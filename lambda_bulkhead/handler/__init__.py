"""The user's handler: loading it by name, calling it as the official runtime
does (coroutines included), and the per-worker hooks.
"""
