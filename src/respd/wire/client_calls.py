"""The client-executed built-in tools in the function dialect every model speaks.

``computer_use_preview``, ``local_shell``, ``shell`` and ``apply_patch`` are understood natively only by
OpenAI's own models. For any other model, respd offers each as a function with a JSON schema (:func:`offer`),
turns the model's call into the real item — ``computer_call`` with its ``action``, ``local_shell_call``,
``shell_call``, ``apply_patch_call`` (:func:`call_fields`) — and, when a context is replayed to the model,
turns those items and their outputs back into a function call and its result (:func:`replayed_call`,
:func:`output_text`).

The model's arguments are read leniently: a small model that writes ``"command": "ls -la"`` instead of an
argv list still gets its command run, and a field it got wrong takes its default rather than failing the
response; the item the client gets always has the spec's shape.
"""

from __future__ import annotations

from typing import Any

import orjson

from respd.wire.tools import ClientTool, ComputerUsePreviewTool

# tool type → the function name the model calls it by, and the item type its calls become
FUNCTION_NAMES = {"computer_use_preview": "computer", "local_shell": "local_shell", "shell": "shell",
                  "apply_patch": "apply_patch"}  # fmt: skip
CALL_TYPES = {"computer_use_preview": "computer_call", "local_shell": "local_shell_call", "shell": "shell_call",
              "apply_patch": "apply_patch_call"}  # fmt: skip
KIND_OF_CALL = {call: kind for kind, call in CALL_TYPES.items()}
# output item type → the call item type it answers
OUTPUT_OF = {"computer_call_output": "computer_call", "local_shell_call_output": "local_shell_call",
             "shell_call_output": "shell_call", "apply_patch_call_output": "apply_patch_call"}  # fmt: skip
ID_PREFIXES = {"computer_call": "cu", "computer_call_output": "cuo", "local_shell_call": "lsh",
               "local_shell_call_output": "lsho", "shell_call": "sh", "shell_call_output": "sho",
               "apply_patch_call": "apc", "apply_patch_call_output": "apco"}  # fmt: skip

_ACTIONS = ["click", "double_click", "drag", "keypress", "move", "screenshot", "scroll", "type", "wait"]
_KEYS = {"type": "array", "items": {"type": "string"}, "description": "Keys held down during the action."}
_COMPUTER = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": _ACTIONS, "description": "The action."},
        "x": {"type": "integer", "description": "click, double_click, move, scroll: the x coordinate."},
        "y": {"type": "integer", "description": "click, double_click, move, scroll: the y coordinate."},
        "button": {"type": "string", "enum": ["left", "right", "wheel", "back", "forward"],
                   "description": "click: the mouse button (default left)."},
        "keys": {**_KEYS, "description": "keypress: the key combination; others: keys held down."},
        "text": {"type": "string", "description": "type: the text to type."},
        "scroll_x": {"type": "integer", "description": "scroll: horizontal distance."},
        "scroll_y": {"type": "integer", "description": "scroll: vertical distance."},
        "path": {"type": "array", "description": "drag: the points of the drag path.",
                 "items": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                           "required": ["x", "y"]}},
    },
    "required": ["type"],
}  # fmt: skip
_LOCAL_SHELL = {
    "type": "object",
    "properties": {
        "command": {"type": "array", "items": {"type": "string"},
                    "description": 'The program and its arguments, e.g. ["bash", "-lc", "ls -la"].'},
        "working_directory": {"type": "string", "description": "The directory to run it in."},
        "timeout_ms": {"type": "integer", "description": "Stop it after this many milliseconds."},
        "env": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "Environment variables to set."},
    },
    "required": ["command"],
}  # fmt: skip
_SHELL = {
    "type": "object",
    "properties": {
        "commands": {"type": "array", "items": {"type": "string"}, "description": "Shell commands, run in order."},
        "timeout_ms": {"type": "integer", "description": "Stop them after this many milliseconds."},
        "max_output_length": {"type": "integer", "description": "Most characters of output to return."},
    },
    "required": ["commands"],
}  # fmt: skip
_APPLY_PATCH = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["create_file", "update_file", "delete_file"]},
        "path": {"type": "string", "description": "The file's path, relative to the workspace root."},
        "diff": {"type": "string", "description": "create_file and update_file: the diff (see the tool)."},
    },
    "required": ["type", "path"],
}  # fmt: skip
_PATCH_HELP = (
    "Create, update or delete one file. For create_file, `diff` is the new file's content with every line "
    "prefixed by '+'. For update_file, `diff` is a V4A diff: each hunk starts with an '@@' line (optionally naming "
    "a nearby line such as a function definition), then its lines: ' ' for context, '-' for a removed line, '+' "
    "for an added one. delete_file takes no diff."
)


def offer(tool: ClientTool) -> dict[str, Any]:
    """The neutral tool a backend offers its model for a client-executed built-in."""
    description, parameters = _FUNCTIONS[tool.type]
    if isinstance(tool, ComputerUsePreviewTool):
        description = (
            f"Control a computer ({tool.environment}) whose display is {tool.display_width}x{tool.display_height} "
            f"pixels. {description}"
        )
    return {"type": tool.type, "name": FUNCTION_NAMES[tool.type], "namespace": None, "description": description,
            "parameters": parameters, "strict": None}  # fmt: skip


_FUNCTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "computer_use_preview": (
        "Each call performs one action: click, double_click, drag, keypress, move, screenshot, scroll, type or "
        "wait. The result is a screenshot of the screen after the action.",
        _COMPUTER,
    ),
    "local_shell": ("Run a command on the user's machine. The result is its output.", _LOCAL_SHELL),
    "shell": (
        "Run shell commands on the user's machine. The result is each command's output and exit code.", _SHELL
    ),
    "apply_patch": (_PATCH_HELP, _APPLY_PATCH),
}


# -- the model's call → the item ---------------------------------------------------------------------------
def _args(raw: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _int(value: Any, default: int | None = 0) -> int | None:
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return default


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def _computer_action(a: dict[str, Any]) -> dict[str, Any]:
    kind = a.get("type") if a.get("type") in _ACTIONS else "screenshot"
    keys = _strings(a["keys"]) if a.get("keys") is not None else None
    at = {"x": _int(a.get("x")), "y": _int(a.get("y"))}
    if kind == "click":
        button = a.get("button") if a.get("button") in ("left", "right", "wheel", "back", "forward") else "left"
        return {"type": kind, "button": button, **at, "keys": keys}
    if kind in ("double_click", "move"):
        return {"type": kind, **at, "keys": keys}
    if kind == "drag":
        points = [p for p in a.get("path") or () if isinstance(p, dict)] if isinstance(a.get("path"), list) else []
        return {"type": kind, "path": [{"x": _int(p.get("x")), "y": _int(p.get("y"))} for p in points], "keys": keys}
    if kind == "keypress":
        return {"type": kind, "keys": keys or []}
    if kind == "scroll":
        return {"type": kind, **at, "scroll_x": _int(a.get("scroll_x")), "scroll_y": _int(a.get("scroll_y")),
                "keys": keys}  # fmt: skip
    if kind == "type":
        return {"type": kind, "text": str(a.get("text") or "")}
    return {"type": kind}


def _local_shell_action(a: dict[str, Any]) -> dict[str, Any]:
    command = a.get("command")
    # a command written as one string is run by a shell, as the model meant it
    argv = ["bash", "-lc", command] if isinstance(command, str) else _strings(command)
    env = a.get("env")
    env = env if isinstance(env, dict) else {}
    return {"type": "exec", "command": argv, "env": {str(k): str(v) for k, v in env.items()},
            "timeout_ms": _int(a.get("timeout_ms"), None), "working_directory": _str(a.get("working_directory")),
            "user": _str(a.get("user"))}  # fmt: skip


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _shell_action(a: dict[str, Any]) -> dict[str, Any]:
    return {"commands": _strings(a.get("commands", a.get("command"))), "timeout_ms": _int(a.get("timeout_ms"), None),
            "max_output_length": _int(a.get("max_output_length"), None)}  # fmt: skip


def _patch_operation(a: dict[str, Any]) -> dict[str, Any]:
    kind = a.get("type") if a.get("type") in ("create_file", "update_file", "delete_file") else "update_file"
    op = {"type": kind, "path": str(a.get("path") or "")}
    if kind != "delete_file":
        op["diff"] = str(a.get("diff") or "")
    return op


def call_fields(kind: str, arguments: str) -> dict[str, Any]:
    """The typed fields of a ``kind`` call item, from the model's JSON arguments."""
    a = _args(arguments)
    if kind == "computer_use_preview":
        return {"action": _computer_action(a)}
    if kind == "local_shell":
        return {"action": _local_shell_action(a)}
    if kind == "shell":
        return {"action": _shell_action(a)}
    return {"operation": _patch_operation(a)}


def pending_fields(kind: str) -> dict[str, Any]:
    """A call item's fields while the model is still writing it (``response.output_item.added``)."""
    if kind == "computer_use_preview":
        return {"pending_safety_checks": []}
    if kind == "local_shell":
        return {"action": {"type": "exec", "command": [], "env": {}, "timeout_ms": None,
                           "working_directory": None, "user": None}}  # fmt: skip
    if kind == "shell":
        return {"action": {"commands": [], "timeout_ms": None, "max_output_length": None}, "environment": None}
    return {"operation": {"type": "update_file", "path": "", "diff": ""}}


# -- the item → the model's call and its result, for a replayed context ----------------------------------
def replayed_call(item: dict[str, Any]) -> tuple[str, str]:
    """The function name and JSON arguments a client-executed call item stands for."""
    kind = KIND_OF_CALL[item["type"]]
    if kind == "apply_patch":
        args: Any = item["operation"]
    elif kind == "local_shell":
        args = {k: v for k, v in item["action"].items() if k != "type" and v not in (None, {})}
    elif kind == "shell":
        args = {k: v for k, v in item["action"].items() if v is not None}
    else:
        actions = item.get("actions") or ([item["action"]] if item.get("action") else [])
        args = {k: v for k, v in actions[0].items() if v is not None} if len(actions) == 1 else {"actions": actions}
    return FUNCTION_NAMES[kind], orjson.dumps(args).decode()


def output_text(item: dict[str, Any]) -> str:
    """What the model reads as the result of a client-executed call."""
    kind = item["type"]
    if kind == "computer_call_output":
        shot = item["output"]
        if shot.get("image_url"):
            return "Screenshot taken; it follows as an image."
        return f"Screenshot taken (file {shot.get('file_id')})." if shot.get("file_id") else "No screenshot."
    if kind == "shell_call_output":
        return orjson.dumps(item["output"]).decode()
    if kind == "apply_patch_call_output":
        out = item.get("output") or ""
        return f"{item['status']}: {out}" if out else item["status"]
    return str(item["output"])


def output_image(item: dict[str, Any]) -> str | None:
    """The screenshot URL (often a data URL) of a ``computer_call_output``, for a model that reads images."""
    if item["type"] != "computer_call_output":
        return None
    url = item["output"].get("image_url")
    return url if isinstance(url, str) else None
