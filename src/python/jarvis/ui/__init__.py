"""`jarvis ui`: a read-only web view of the audit trail, memory and state (Starlette, server-rendered).

Read-only by construction: the database is opened as the auditor role (SELECT only, every
transaction read-only), the only POST starts a verify (which reads), nothing migrates or seals.
Everything shown from the trail is attacker-controlled text: it is escaped by Jinja's autoescape,
its control and bidirectional-override characters are made visible, long values are cut for display,
and a strict Content-Security-Policy allows only this package's own script and style sheet.
"""

from jarvis.ui.app import create_app
from jarvis.ui.guard import is_loopback

__all__ = ["create_app", "is_loopback"]
