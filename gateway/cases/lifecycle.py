"""The case lifecycle as data: states, the transitions between them, and the stage clocks.

No I/O here: the case book (``cases.book``) asks :func:`check` whether an action may
happen in a state and writes what it returns.  A case begins at 立案 (``registered``)
when the intake queue accepts a report, and ends at 结案 (``closed``) or 作废 (``voided``).

    registered ─dispatch→ dispatched ─start→ handling ─feedback→ reported ─check→ checking
    checking ─resolved→ closed          checking ─unresolved→ rework ─start→ handling
    checking ─check→ checking (a new 核查 task when the first expired or was lost)
    rework ─dispatch→ dispatched (another department)
    registered/dispatched/handling/rework ─defer→ deferred ─resume→ registered
    any open state ─void→ voided        any state ─override (值班长, reason)→ any other state

``resolved`` and ``unresolved`` are the 核查 task's result, not operator actions.
"""

from ..errors import GatewayError

REGISTERED, DISPATCHED, HANDLING, REPORTED, CHECKING = (
    "registered", "dispatched", "handling", "reported", "checking")
CLOSED, REWORK, VOIDED, DEFERRED = "closed", "rework", "voided", "deferred"

LABELS = {REGISTERED: "立案", DISPATCHED: "派遣", HANDLING: "处置中", REPORTED: "处置反馈",
          CHECKING: "核查", CLOSED: "结案", REWORK: "返工", VOIDED: "作废", DEFERRED: "挂账"}
STATES = tuple(LABELS)
TERMINAL = (CLOSED, VOIDED)
OPEN = tuple(s for s in STATES if s not in TERMINAL)

# action → (label, the states it may leave, the state it enters, what it needs)
TRANSITIONS = {
    "dispatch": ("派遣", (REGISTERED, REWORK), DISPATCHED, ("department",)),
    "start": ("开始处置", (DISPATCHED, REWORK), HANDLING, ()),
    "feedback": ("处置反馈", (HANDLING,), REPORTED, ("photos",)),
    "check": ("核查", (REPORTED, CHECKING), CHECKING, ("task",)),
    "resolved": ("核查通过", (CHECKING,), CLOSED, ("task",)),
    "unresolved": ("核查未通过", (CHECKING,), REWORK, ("task",)),
    "defer": ("挂账", (REGISTERED, DISPATCHED, HANDLING, REWORK), DEFERRED, ("reason",)),
    "resume": ("恢复", (DEFERRED,), REGISTERED, ()),
    "void": ("作废", OPEN, VOIDED, ("reason",)),
}
OVERRIDE = "override"  # 值班长: any state to any other, with a reason
ACTIONS = (*TRANSITIONS, OVERRIDE)

# The stage each state's time counts against; a stage's clock starts when a case enters
# it and is judged (on time or late) when the case leaves it.
STAGES = ("dispatch", "handle", "check")
STAGE_LABELS = {"dispatch": "派遣时限", "handle": "处置时限", "check": "核查时限"}
STAGE_OF = {REGISTERED: "dispatch", DISPATCHED: "handle", HANDLING: "handle",
            REWORK: "handle", REPORTED: "check", CHECKING: "check"}

# 核查 results (the device's words) → the transition they drive
CHECK_RESULTS = {"resolved": "resolved", "unresolved": "unresolved"}


class Refused(GatewayError):
    """The action may not happen now; ``str()`` says why, in one sentence."""

    def __init__(self, message, state=None, allowed=()):
        super().__init__(message)
        self.state = state
        self.allowed = tuple(allowed)


def label(state):
    return f"{LABELS.get(state, state)} ({state})"


def allowed_actions(state):
    """The actions that may leave ``state`` (not counting the 值班长 override)."""
    return tuple(a for a, (_, sources, _, _) in TRANSITIONS.items() if state in sources)


def check(action, state, target=None):
    """The state ``action`` leads to from ``state``, or :class:`Refused` naming why not.

    ``target`` is the override's chosen state; it is ignored for other actions.
    """
    if state not in LABELS:
        raise Refused(f"unknown case state {state!r}", state)
    if action == OVERRIDE:
        if target not in LABELS:
            raise Refused(f"override: the state to set must be one of {', '.join(STATES)}, "
                          f"not {target!r}", state)
        if target == state:
            raise Refused(f"override: the case is {label(state)} already", state)
        return target
    if action not in TRANSITIONS:
        raise Refused(f"unknown case action {action!r}: one of {', '.join(ACTIONS)}", state)
    name, sources, goal, _ = TRANSITIONS[action]
    if state not in sources:
        can = allowed_actions(state)
        then = (f"; from {label(state)} only {', '.join(can)}" if can
                else f"; {label(state)} is final (only a 值班长 override reopens it)")
        raise Refused(f"cannot {action} ({name}): the case is {label(state)}, and {action} "
                      f"is only from {', '.join(label(s) for s in sources)}{then}", state, can)
    return goal


def stage_change(before, after):
    """(stage left or None, stage entered or None) when a case moves ``before`` → ``after``.

    Moving within a stage (派遣 → 处置中) keeps its clock; 返工 starts the 处置 clock
    anew, since the department gets a new deadline for the second attempt.
    """
    left, entered = STAGE_OF.get(before), STAGE_OF.get(after)
    if left == entered and after != REWORK:
        return None, None
    return left, entered


def on_time(due, at):
    """Whether a stage that was due at ``due`` (wire time or None) ended ``at`` in time;
    None when the stage had no deadline.  Wire times compare as text."""
    if due is None:
        return None
    return at <= due
