"""Wire-format front ends (ACME, EST, OCSP, CRL) over the CA engine."""

__all__: list[str] = []
