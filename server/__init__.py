"""privca: a private certificate authority (ACME, EST, OCSP, CRL) on one CA engine."""

__all__: list[str] = []
