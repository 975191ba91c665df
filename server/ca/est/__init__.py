"""EST (RFC 7030) engine: labels, users, client-certificate login, csrattrs, enrollment.

Front ends import ``server.ca.est.api`` only.
"""
