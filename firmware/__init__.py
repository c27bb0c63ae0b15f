"""Field-device firmware: the I/O-free core, hardware adapters and the device runtime."""
