"""Helpers shared by the test suite: a real server in a subprocess, and an SSE client."""
