"""The downstream messaging app that the demo and the tests put behind the Bascule gateway.

It is written as a third party would write it: it imports nothing of Bascule and trusts only
the signed ``X-Bascule-Assertion`` header, verified against the IdP's published keys. The
factory is ``examples.messaging.app:create_app``.
"""
