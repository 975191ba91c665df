"""ACME front end (RFC 8555 + 8737, 8738, 9773, EAB, profiles) over the ACME engine facade."""

__all__: list[str] = []
