"""Benchmarks of resp-bridge (run `python -m benchmarks.harness --help`; see benchmarks/README.md).

Only local servers are ever started or contacted (redis-server, the devserver and the bridge on
loopback): Upstash bills every command, so nothing here takes an upstream URL.
"""
