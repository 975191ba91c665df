"""ACME (RFC 8555) engine: accounts, orders, challenges, finalize, revocation, ARI.

Front ends import ``server.ca.acme.api`` only.
"""
