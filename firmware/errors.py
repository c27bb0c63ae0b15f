"""The Pi device's one exception base (the CLI prints it as one clear line, exit 2)."""


class DeviceError(Exception):
    """Base of every error the Pi-side device code raises on bad input or setup."""


class ProfileError(DeviceError):
    """A device profile failed validation; ``problems`` lists each one."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
