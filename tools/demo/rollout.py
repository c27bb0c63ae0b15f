"""``gridlink demo --rollout V``: the simulated Pis start from release 1.0 in update slot a
(provisioned as ``gridlink flash provision --release`` does), through the A/B launcher as
their unit starts them, and after ``--rollout-after`` seconds a rollout of release V to the
district begins (canary first) through the API, as a 技术员 would start it.  Each device
takes the offer, fetches and verifies V from the gateway (TUF), restarts into slot b, passes
its health check and keeps it; the board's updates page (``/board/updates.html``) shows it
happen.

The demo's releases are signed with keys made for the run and carry no new code: a ``site/``
with only a version marker, so either slot runs the installed gridlink.
"""

from pathlib import Path

from .errors import DemoError

FIRST = "1.0"
STAGES = [25, 100]


def _release_tar(work, version):
    from gridlink.fleet.release import write_release_tar

    src = Path(work) / f"release-{version}"
    (src / "site").mkdir(parents=True, exist_ok=True)
    (src / "site" / "gridlink_demo_release.py").write_text(f"VERSION = {version!r}\n")
    tar = Path(work) / f"release-{version}.tar"
    write_release_tar(tar, "pi", version, src)
    return tar


def _key(version):
    parts = [int(p) for p in version.split(".")]
    return parts + [0] * (4 - len(parts))


class DemoRollout:
    """The run's update repository (releases 1.0 and ``version``) and its rollout."""

    def __init__(self, data, version, after_s):
        from gridlink.fleet.errors import FleetError
        from gridlink.fleet.repo import Repository, check_version

        try:
            check_version(version)
        except FleetError as exc:
            raise DemoError(f"--rollout: {exc}") from None
        if _key(version) <= _key(FIRST):
            raise DemoError(f"--rollout: {version} must be newer than the fleet's {FIRST}")
        if after_s < 0:
            raise DemoError("--rollout-after: 0 seconds or more")
        self.version, self.after_s = version, after_s
        self.dir = Path(data) / "ota"
        self.repo = Repository(self.dir / "repo")
        self.rollout = None
        if not (self.dir / "repo" / "metadata" / "timestamp.json").exists():
            self._make()

    def _make(self):
        from gridlink.fleet.keys import init_keys

        keys = self.dir / "keys"
        init_keys(keys)
        for v in (FIRST, self.version):
            self.repo.add_release(keys, "pi", v, _release_tar(self.dir, v))

    @property
    def path(self):
        return self.repo.path

    def provision(self, device_dir):
        """Release 1.0 in slot a of a device's data dir, unless it has slots already."""
        from gridlink.firmware.device.slots import Slots
        from gridlink.flash.first_release import FirstRelease

        ota = Path(device_dir) / "ota"
        if Slots(ota).current() is not None:
            return
        first = FirstRelease(self.repo.path, FIRST, prepare=lambda _slot: None)
        try:
            first.install(ota)
        finally:
            first.close()

    def device_args(self, board_url):
        return ["--update-repo", board_url + "/ota", "--health-deadline", "60",
                "--update-retry", "5"]

    def start(self, api):
        """The rollout to the district, through the API (a 技术员's token)."""
        self.rollout = api.post("/api/rollouts", {
            "kind": "pi", "version": self.version, "target": {"district": "410106"},
            "stages": STAGES, "failure_threshold": 20})
        return self.rollout

    def line(self, api):
        """One line of the rollout's progress."""
        if self.rollout is None:
            return None
        r = api.get(f"/api/rollouts/{self.rollout['id']}")
        done = sum(s.get("installed", 0) for s in r["progress"])
        total = sum(s["devices"] for s in r["progress"])
        return (f"rollout {r['id']}: pi {r['version']} {r['state']}, stage {r['stage']}/"
                f"{len(r['stages'])}, {done} of {total} devices installed"
                + (f" ({r['reason']})" if r["reason"] else ""))
