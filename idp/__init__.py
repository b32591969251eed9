"""Bascule's identity provider: accounts, passwords, sessions, organisations, audit."""
