"""Revocation status for validators: OCSP responder, CRL publisher and their codecs.

Front ends import ``server.ca.status.api`` only.
"""
