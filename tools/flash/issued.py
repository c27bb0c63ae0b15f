"""The district's record of issued identities (``issued.csv`` beside the CA certificate)
as the flash tools use it: gateway/issued.py's record, its errors FlashError."""

from gridlink.gateway import issued

from .errors import FlashError


class IssuedRecord(issued.IssuedRecord):
    error = FlashError
