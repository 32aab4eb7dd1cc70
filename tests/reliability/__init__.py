"""Reliability tests: faults, load, misbehaving clients, bad input, secrets (helpers in
`helpers.py`; each test starts the processes it needs and depends on no other test)."""
