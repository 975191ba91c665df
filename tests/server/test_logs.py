"""Log output: JSON lines carry time, level, logger, message and the request being served."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import logs
from server.config import ConfigError, load_settings
from server.metrics import http
from server.metrics.families import Families
from tests.server.metrics.conftest import ClientFactory


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    for h in saved[0]:
        root.removeHandler(h)
    logs.configure("json")
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_are_one_object_each(captured: io.StringIO) -> None:
    log = logging.getLogger("privca.test")
    log.info("issued %s\nsecond line", "ABC")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    first, second = _lines(captured)
    assert first["level"] == "INFO"
    assert first["logger"] == "privca.test"
    assert first["message"] == "issued ABC\nsecond line"
    assert first["time"].endswith("+00:00")
    assert "request" not in first
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exception"]


async def test_lines_written_while_serving_carry_the_request(
    captured: io.StringIO, aiohttp_client: ClientFactory
) -> None:
    async def handler(request: web.Request) -> web.Response:
        logging.getLogger("privca.test").info("handling")
        return web.Response(text="ok")

    app = web.Application(middlewares=[http.middleware(Families(None))])
    app.router.add_get("/things/{name}", handler)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    assert (await client.get("/things/x1?q=1")).status == 200
    logging.getLogger("privca.test").info("after")
    lines = [line for line in _lines(captured) if line["logger"] == "privca.test"]
    assert lines[0]["message"] == "handling"
    assert lines[0]["request"]["method"] == "GET"
    assert lines[0]["request"]["path"] == "/things/x1"
    assert lines[0]["request"]["endpoint"] == "/things/{name}"
    assert lines[0]["request"]["remote"] == "127.0.0.1"
    assert "request" not in lines[1]
    access = [line for line in _lines(captured) if line["logger"] == "aiohttp.access"]
    assert access
    assert access[0]["request"]["line"] == "GET /things/x1?q=1 HTTP/1.1"
    assert access[0]["request"]["status"] == 200


def test_configure_replaces_its_own_handler_only() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    for h in saved[0]:  # pytest's own capture handlers
        root.removeHandler(h)
    try:
        logs.configure("json")
        (first,) = root.handlers
        assert isinstance(first.formatter, logs.JsonFormatter)
        logs.configure("text")
        (second,) = root.handlers
        assert second is not first
        assert not isinstance(second.formatter, logs.JsonFormatter)
        root.removeHandler(second)
        foreign = logging.NullHandler()
        root.addHandler(foreign)
        logs.configure("json")
        assert root.handlers == [foreign]
        root.removeHandler(foreign)
    finally:
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def test_text_stays_the_default_and_format_is_checked() -> None:
    assert load_settings(None).logging.format == "text"
    with pytest.raises(ConfigError):
        load_settings(None, logging={"format": "xml"})
