"""The simulated backend: NMEA replay over a pty, MockFactory pins, a synthetic camera."""
