"""Shipped device profiles (JSON) and their schema; read by gridlink.firmware.device.profile."""
