"""Who acts in a route, and the audit entries written in their name.

The actor is the signed-in ``Principal`` the guard left on ``request.state`` — never a
name from the request body — and the address is the client's (``TrustedProxies``).
"""

from ..auth import roles


class Acting:
    """The request's principal and address, and the audit trail to write to."""

    def __init__(self, trail, request):
        self.trail = trail
        self.principal = request.state.principal
        self.name = self.principal.name
        self.address = request.state.address

    @property
    def may_override(self):
        """值班长: may act on another operator's claim."""
        return self.principal.can(roles.OVERRIDE)

    def record(self, conn, action, **kw):
        """An entry inside the caller's transaction (the queue's decisions)."""
        return self.trail.record(conn, self.name, action, address=self.address, **kw)

    def append(self, action, **kw):
        return self.trail.append(self.name, action, address=self.address, **kw)

    def changed(self, action, target, listing, match, change):
        """``change()`` audited with the row of ``listing()`` that ``match``es as it was
        before (None: a new one) and what ``change`` returned after (None: removed)."""
        before = next((row for row in listing() if match(row)), None)
        done = change()
        self.append(action, target=target, before=before, after=done)
        return done
