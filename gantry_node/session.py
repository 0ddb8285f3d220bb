"""Old import path: `gantry_node.Session` lives in gantry_node.offline.session."""

from gantry_node.offline.session import IdentityBackup, Session, SessionError  # noqa: F401
