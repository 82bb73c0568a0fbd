"""The Lambda Runtime API: the protocol as pure functions, the socket and httpx
transports, the client, and the one invocation loop.
"""
