"""A scheduler extender that does no work: the floor of any extender served from Python.

``python -m bench.noop_extender HOST:PORT`` serves, with the same uvicorn + httptools +
uvloop stack as ``topolet extender``:

* ``POST .../filter``: every candidate name passes (the names are copied from the
  request as raw JSON, never decoded one by one);
* ``POST .../prioritize``: every candidate scores 0;
* ``GET /healthz``: ``ok``.

``topolet bench scheduler --floor`` runs kube-scheduler against it (no ``bindVerb``: the
scheduler binds) to show what the two HTTP exchanges per pod cost on the machine, apart
from anything topolet computes.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec
import uvicorn

__all__ = ["app", "main"]

#: Largest request body read (kube-scheduler's bodies at 5,000 names are about 100 KiB).
MAX_BODY = 4 << 20

Message = MutableMapping[str, Any]


class _Args(msgspec.Struct):
    NodeNames: msgspec.Raw = msgspec.Raw(b"null")


_ARGS = msgspec.json.Decoder(_Args)
_NAMES = msgspec.json.Decoder(list[str] | None)


def _answer(path: str, body: bytes) -> tuple[int, bytes]:
    try:
        names = bytes(_ARGS.decode(body).NodeNames)
        if path.endswith("/filter"):
            return 200, b'{"NodeNames":' + names + b',"FailedNodes":{},"Error":""}'
        if path.endswith("/prioritize"):
            return 200, msgspec.json.encode([{"Host": n, "Score": 0} for n in _NAMES.decode(names) or []])
    except msgspec.DecodeError as err:
        return 400, msgspec.json.encode({"Error": f"request body: {err}"})
    return 404, msgspec.json.encode({"Error": f"no such verb {path!r}; POST .../filter or .../prioritize"})


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    """The ASGI application."""
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":
        status, out = (200, b"ok") if scope["path"] == "/healthz" else (404, b"")
    else:
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > MAX_BODY:
                status, out = 413, msgspec.json.encode({"Error": f"body over {MAX_BODY} bytes"})
                break
        else:
            status, out = _answer(scope["path"], b"".join(chunks))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": out})


def main(argv: list[str]) -> int:
    if len(argv) != 1 or ":" not in argv[0]:
        print("usage: python -m bench.noop_extender HOST:PORT", file=sys.stderr)
        return 2
    host, _, port = argv[0].rpartition(":")
    if not port.isdigit():
        print(f"bench.noop_extender: port {port!r}: expected a number", file=sys.stderr)
        return 2
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    uvicorn.run(
        app, host=host, port=int(port), loop=loop, http="httptools", log_level="warning", access_log=False
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
