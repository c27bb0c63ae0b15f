"""The patrol morning's schedules: the short one CI runs and the ``--soak`` one.

A schedule is [(t, action, hold)]: at ``t`` seconds ``action(patrol)`` starts a fault;
if it returns a function, that clears the fault ``hold`` seconds later.
"""

from hil_tests.shaper import PROFILES

# Ten vehicles, every link profile; the faults fall on the first five, the 3G ones are
# where trigger→queue is measured.
SOAK_LINKS = ["3G", "4G", "weak", "tunnel", "4G", "3G", "weak", "4G", "3G", "tunnel"]
SHORT_LINKS = SOAK_LINKS


def _v(i):
    return lambda p: p.vehicles[i]


def schedule(vehicles, soak=False):
    """Every fault kind the simulated rig can inject, on ``vehicles`` (≥ 5)."""
    tunnel = PROFILES["tunnel"].cut_s
    plan = [
        (3, lambda p: p.tunnel(p.vehicles[3]), tunnel),
        (4, lambda p: p.gateway_killed(), 5),
        (12, lambda p: p.broker_restart(), 3),
        # 10 s after the restart: the devices reconnect within RECONNECT_MAX_S and its
        # backlog is in before the next broker fault begins (else it counts that one's)
        (25, lambda p: p.broker_lost_persistence(), 1),
        (34, lambda p: p.device_power_cut(p.vehicles[1]), 0),
        (42, lambda p: p.device_power_cut(p.vehicles[2], torn=True), 0),
        (50, lambda p: p.link_cut(p.vehicles[1], 8), 8),
        (52, lambda p: p.disk_full(p.vehicles[4]), 10),
        # the receiver faults cost no CPU and touch no delivery: beside the power cuts of
        # other vehicles, on the vehicle whose disk fills later
        (34, lambda p: p.gnss(p.vehicles[4], "silent"), 6),
        (42, lambda p: p.gnss(p.vehicles[4], "garbage"), 6),
    ]
    if not soak:
        # the shared faults over by ~29 s: the 3G vehicles' presses from 15 s after that
        # to the end are the budget's trigger→queue samples (about 6)
        return plan, 74.0
    # the long morning: the same faults again and again, spread over the fleet
    out, period = [], 90.0
    for round_ in range(12):
        base = round_ * period
        shift = round_ % max(1, vehicles - 4)
        for t, action, hold in plan:
            if action is plan[7][1] and round_:
                continue                  # one tmpfs move per run is enough
            out.append((base + t, _shifted(action, shift), hold))
    return out, 12 * period


def _shifted(action, shift):
    """``action`` on vehicles moved by ``shift`` (so the soak spreads faults round)."""
    if not shift:
        return action

    def run(p):
        saved = p.vehicles
        p.vehicles = saved[shift:] + saved[:shift]
        try:
            return action(p)
        finally:
            p.vehicles = saved
    return run
