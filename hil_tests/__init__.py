"""Hardware-in-the-loop suite: the same tests on a simulated rig (default) or a bench."""
