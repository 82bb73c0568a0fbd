"""Example handlers, runnable with ``lambda-bulkhead local|invoke examples.<module>.handler``."""
