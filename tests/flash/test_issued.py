"""The flash tools' view of the issued-ids record (tools/flash/issued.py): the gateway's
record, its errors the flash tools' one error base."""

import pytest
from gridlink.flash.errors import FlashError
from gridlink.flash.issued import IssuedRecord


def test_the_records_errors_are_flash_errors(tmp_path):
    with pytest.raises(FlashError, match="cannot record the issued certificate"):
        IssuedRecord.beside(tmp_path / "nowhere" / "ca.pem").append("pv-0001", "1A",
                                                                    "2028-01-01")
