"""The Raspberry Pi field device: profiles, runtime, hardware adapters, delivery, CLI."""
