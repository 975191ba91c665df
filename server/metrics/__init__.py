"""Prometheus metrics for ``privca serve`` (prometheus-client; the engine never imports it).

``families`` defines the metric families and records into them, ``gauges`` turns
the database read model into on-scrape gauges, ``http`` holds the request
middleware and the metrics listener, ``process`` the multiprocess directory that
lets ``serve --workers N`` count across processes.
"""

__all__ = ["families", "gauges", "http", "process"]
