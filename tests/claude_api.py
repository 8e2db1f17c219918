"""A scripted Anthropic Messages API on loopback, for driving the real Claude Code CLI.

The CLI is pointed at it with ``ANTHROPIC_BASE_URL``; every request body is kept so a
test can prove what the model was shown.  Answers come from a script::

    api = ScriptedModel(steps=[
        ToolUse("Bash", {"command": "pytest -q", "description": "run tests"}),
        Text("done"),
    ])
    with api:
        run_claude(claude_bin, project, "fix the tests", api)
    assert api.requests_containing("MARKER")

How a request is answered:

* No ``tools`` in the body (session title, other side queries): a short text.
* Otherwise the request belongs to a *conversation*.  When the script answers with an
  ``Agent`` tool call, the server registers a subagent conversation keyed by that call's
  ``prompt``; the CLI (2.1.328) sends a subagent's task as the last text block of the
  subagent's first user message, after the ``<system-reminder>`` blocks, so a request
  whose first user message ends with a registered prompt is that subagent's.  Every
  other request with tools is the main conversation, whose first user message ends
  with the ``-p`` prompt.  (The subagent's ``system`` also holds its agent file's body
  and its ``tools`` only those of its front matter, but neither identifies one launch.)
* Within a conversation, the step answered is the number of assistant turns already in
  ``messages``: the first request gets step 0, the request carrying the ``tool_result``
  of step 0 gets step 1, and so on.  Being derived from the body, this survives the CLI
  retrying a request and needs no shared counter between conversations.

A step is a :class:`Text`, a :class:`ToolUse`, a list of them (one reply with several
blocks, e.g. parallel tool calls), or a callable taking the request body and returning
one of those, for a script that reacts to what it was shown.  :class:`Subagent` is a
``ToolUse("Agent", …)`` that also carries the subagent's own steps.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping, Sequence, Union

SIDE_QUERY_TEXT = "Scripted session"
EXHAUSTED_TEXT = "(scripted model: no step left)"


@dataclass(frozen=True)
class Text:
    """An assistant text block; as the last block of a reply it ends the turn."""

    text: str


@dataclass(frozen=True)
class ToolUse:
    """An assistant ``tool_use`` block; the reply stops with ``stop_reason: tool_use``."""

    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Subagent:
    """Launch a subagent through the ``Agent`` tool, with the steps of its own conversation.

    The subagent's requests are recognised by ``prompt`` ending their first user message,
    so keep it distinctive within one test.  ``background=False`` (the default here) makes
    the parent wait for the result, as the hook order in CLAUDE_CODE.md assumes; the CLI's
    own default is background, whose completion reaches the parent as a new
    ``<task-notification>`` turn that needs a step of its own.
    """

    subagent_type: str
    prompt: str
    steps: Sequence["Step"]
    description: str = "scripted task"
    background: bool = False

    def tool_use(self) -> ToolUse:
        return ToolUse(
            "Agent",
            {
                "subagent_type": self.subagent_type,
                "description": self.description,
                "prompt": self.prompt,
                "run_in_background": self.background,
            },
        )


Block = Union[Text, ToolUse, Subagent]
Step = Union[Block, Sequence[Block], Callable[[dict], Union[Block, Sequence[Block]]]]


# --- reading request bodies ---------------------------------------------------------


def _content_text(content: Any) -> list[str]:
    """Every string inside a message ``content`` (text, tool_use input, tool_result)."""
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                out.append(block.get("text", ""))
            elif kind == "tool_use":
                out.append(json.dumps(block.get("input", {}), ensure_ascii=False))
            elif kind == "tool_result":
                out.extend(_content_text(block.get("content", "")))
    return out


def all_text(request: dict) -> str:
    """The request's system prompt and every message's text, flattened to one string."""
    parts = _content_text(request.get("system", ""))
    for message in request.get("messages", []):
        parts.extend(_content_text(message.get("content", "")))
    return "\n".join(parts)


def first_user_text(request: dict) -> str:
    """Text of the first user message: where the CLI puts the prompt or subagent task."""
    for message in request.get("messages", []):
        if message.get("role") == "user":
            return "\n".join(_content_text(message.get("content", "")))
    return ""


def tool_results(request: dict) -> list[dict]:
    """Every ``tool_result`` block in the request's messages, oldest first."""
    return [
        block
        for message in request.get("messages", [])
        if message.get("role") == "user" and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]


def assistant_turns(request: dict) -> int:
    """Assistant turns already answered in this conversation (consecutive ones count once)."""
    turns, previous = 0, None
    for message in request.get("messages", []):
        role = message.get("role")
        if role == "assistant" and previous != "assistant":
            turns += 1
        if role in ("user", "assistant"):
            previous = role
    return turns


# --- SSE encoding ---------------------------------------------------------------------


def _block_events(index: int, block: Text | ToolUse, ids: Any) -> list[tuple[str, dict]]:
    if isinstance(block, Text):
        start = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": block.text}
    else:
        start = {"type": "tool_use", "id": f"toolu_{next(ids):08d}", "name": block.name, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block.input)}
    return [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def _message(blocks: Sequence[Text | ToolUse], model: str, ids: Any) -> tuple[dict, list[tuple[str, dict]]]:
    """A complete assistant message and the SSE events that stream it."""
    stop = "tool_use" if any(isinstance(b, ToolUse) for b in blocks) else "end_turn"
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    msg_id = f"msg_{next(ids):08d}"
    events: list[tuple[str, dict]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id, "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {**usage, "output_tokens": 1},
                },
            },
        )
    ]
    content = []
    for index, block in enumerate(blocks):
        block_events = _block_events(index, block, ids)
        events.extend(block_events)
        first = dict(block_events[0][1]["content_block"])
        if isinstance(block, Text):
            first["text"] = block.text
        else:
            first["input"] = block.input
        content.append(first)
    events.append(
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 5}},
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    whole = {
        "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop, "stop_sequence": None, "usage": usage,
    }
    return whole, events


# --- the server -----------------------------------------------------------------------


@dataclass
class Conversation:
    """One scripted conversation: the main agent's, or one subagent launch."""

    name: str
    steps: Sequence[Step]
    prompt: str | None = None  # the Agent tool's prompt; None for the main conversation


class ScriptedModel:
    """A Messages API server on 127.0.0.1 answering from a script; use as a context manager.

    ``steps`` script the main conversation.  ``subagents`` maps a ``subagent_type`` to the
    steps of every launch of that type made with a plain ``ToolUse("Agent", …)``;
    a :class:`Subagent` step carries its own.
    """

    def __init__(
        self,
        steps: Sequence[Step],
        *,
        subagents: Mapping[str, Sequence[Step]] | None = None,
        side_text: str = SIDE_QUERY_TEXT,
    ) -> None:
        self.main = Conversation("main", list(steps))
        self.subagent_steps = dict(subagents or {})
        self.side_text = side_text
        self.errors: list[str] = []
        self._launches: list[Conversation] = []
        self._lock = threading.Lock()
        self._log: list[dict] = []
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # lifecycle
    def __enter__(self) -> "ScriptedModel":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"model": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # A short poll interval keeps stop() (and so each test's teardown) quick.
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # the log
    @property
    def log(self) -> list[dict]:
        """Every request seen, in arrival order: dicts with path, body, conversation, step."""
        with self._lock:
            return list(self._log)

    @property
    def requests(self) -> list[dict]:
        """Bodies of every ``/v1/messages`` request, in arrival order."""
        return [e["body"] for e in self.log if e["path"] == "/v1/messages"]

    def conversation_requests(self, name: str) -> list[dict]:
        """Bodies of the requests routed to one conversation: ``"main"``, ``"side"`` or a
        subagent type (a second launch of one type is ``"helena#2"``)."""
        return [e["body"] for e in self.log if e.get("conversation") == name]

    all_text = staticmethod(all_text)

    def requests_containing(self, text: str) -> list[dict]:
        """Bodies of the ``/v1/messages`` requests whose :func:`all_text` contains ``text``."""
        return [body for body in self.requests if text in all_text(body)]

    # routing and answering
    def route(self, body: dict) -> Conversation | None:
        """The conversation a request belongs to; None for a side query without tools."""
        if not body.get("tools"):
            return None
        first = first_user_text(body).rstrip()
        with self._lock:
            launches = sorted(self._launches, key=lambda c: -len(c.prompt or ""))
        # The CLI appends the Agent tool's prompt, verbatim, to the subagent's first user
        # message; the main conversation's first user message ends with the -p prompt.
        for conv in launches:
            if conv.prompt and first.endswith(conv.prompt.rstrip()):
                return conv
        return self.main

    def _launch(self, block: Text | ToolUse | Subagent) -> Text | ToolUse:
        """Turn a block into what is sent, registering the conversation of an Agent call."""
        if isinstance(block, Text) or (isinstance(block, ToolUse) and block.name != "Agent"):
            return block
        if isinstance(block, Subagent):
            steps, block = block.steps, block.tool_use()
        else:
            steps = self.subagent_steps.get(block.input.get("subagent_type", ""), [])
        kind = block.input.get("subagent_type") or "general-purpose"
        prompt = block.input.get("prompt", "")
        with self._lock:
            if not any(c.prompt == prompt for c in self._launches):
                same = sum(c.name.split("#")[0] == kind for c in self._launches)
                name = kind if not same else f"{kind}#{same + 1}"
                self._launches.append(Conversation(name, list(steps), prompt))
        return block

    def answer(self, body: dict) -> tuple[str, int | None, list[Text | ToolUse]]:
        """The conversation, step index and blocks of the reply to one request."""
        conv = self.route(body)
        if conv is None:
            return "side", None, [Text(self.side_text)]
        index = assistant_turns(body)
        if index >= len(conv.steps):
            with self._lock:
                self.errors.append(f"{conv.name}: no step {index} (script has {len(conv.steps)})")
            return conv.name, index, [Text(EXHAUSTED_TEXT)]
        step = conv.steps[index]
        if callable(step) and not isinstance(step, (Text, ToolUse, Subagent)):
            step = step(body)
        blocks = list(step) if isinstance(step, (list, tuple)) else [step]
        return conv.name, index, [self._launch(b) for b in blocks]

    def _record(self, entry: dict) -> None:
        with self._lock:
            self._log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    model: ScriptedModel
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("request-id", f"req_{next(self.model._ids):08d}")
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_GET(self) -> None:
        self.model._record({"path": self.path.split("?")[0], "method": "GET", "body": None})
        self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        if path == "/v1/messages/count_tokens":
            self.model._record({"path": path, "body": body})
            self._json(200, {"input_tokens": max(1, len(raw) // 4)})
            return
        if path != "/v1/messages":
            self.model._record({"path": path, "body": body})
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": path}})
            return
        try:
            conversation, step, blocks = self.model.answer(body)
        except Exception as exc:  # a broken script must show up in the test, not hang the CLI
            with self.model._lock:
                self.model.errors.append(f"script raised {exc!r}")
            conversation, step, blocks = "error", None, [Text(f"(scripted model error: {exc!r})")]
        self.model._record({"path": path, "body": body, "conversation": conversation, "step": step})
        whole, events = _message(blocks, body.get("model", "claude-scripted"), self.model._ids)
        if body.get("stream"):
            stream = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
            self._send(200, stream.encode(), "text/event-stream")
        else:
            self._json(200, whole)
