"""The demo's CA folder is a district CA folder: ``gridlink fleet revoke`` works on it."""

import subprocess
import sys

from gridlink.demo.pki import DemoPKI
from gridlink.gateway.revocation import Revocations


def revoke(folder, device):
    return subprocess.run([sys.executable, "-m", "gridlink.cli", "fleet", "revoke", device,
                           "--reason", "stolen", "--ca", str(folder)],
                          capture_output=True, text=True, timeout=60)


def test_a_demo_device_is_revoked_with_the_fleet_command(tmp_path):
    pki = DemoPKI(tmp_path / "pki")
    pki.issue("pv-0001")
    pki.issue("pv-0002")
    assert pki.crl.exists()                      # published with the CA: none revoked
    assert Revocations(pki.crl).revoked("pv-0001") is None
    done = revoke(pki.folder, "pv-0002")
    assert done.returncode == 0, done.stderr
    revocations = Revocations(pki.crl)          # what the demo's gateway reads (--crl)
    assert "every certificate of pv-0002 is on the district CRL" in revocations.revoked("pv-0002")
    assert revocations.revoked("pv-0001") is None
    # the next start re-signs the CRL and keeps what is on it; kept certificates stay
    # recorded once
    again = DemoPKI(tmp_path / "pki")
    again.issue("pv-0002")
    assert Revocations(again.crl).revoked("pv-0002")
    lines = (pki.folder / "issued.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in lines[1:]] == ["broker", "pv-0001", "pv-0002"]


def test_a_device_the_demo_never_issued_is_named(tmp_path):
    pki = DemoPKI(tmp_path / "pki")
    done = revoke(pki.folder, "pv-0009")
    assert done.returncode == 2 and "'pv-0009' has no certificate in" in done.stderr
    assert Revocations(pki.crl).devices == []
