"""ACME (RFC 8555) engine: accounts, orders, challenges, finalize, revocation, ARI.

One module per concept: ``accounts`` (accounts, EAB), ``orders`` (orders,
authorizations, challenges), ``finalize`` (finalize, download), ``revocation``,
``renewal`` (ARI), ``nonces``, ``validation``, ``ratelimit``; ``service`` composes
them into ``AcmeService``. Front ends import ``server.ca.acme.api`` only.
"""
