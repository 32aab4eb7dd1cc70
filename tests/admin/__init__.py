"""Tests of the admin socket (bridge controls) and of database management."""
