"""The runtime's edge on the operating system: libc calls (prctl), signals,
``/proc`` readings, orphan reaping and CPU affinity.
"""
