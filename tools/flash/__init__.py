"""Technicians' tools: build, flash, provision and self-test devices."""
