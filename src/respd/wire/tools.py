"""Tool definitions a request may carry (``S:Tool``): in ``tools``, or inside input items that bring tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from respd.wire.base import Wire, tagged


class FunctionTool(Wire):
    type: Literal["function"]
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    defer_loading: bool | None = None


class CustomFormatText(Wire):
    type: Literal["text"]


class CustomFormatGrammar(Wire):
    type: Literal["grammar"]
    syntax: Literal["lark", "regex"]
    definition: str


if TYPE_CHECKING:
    CustomFormat = CustomFormatText | CustomFormatGrammar
else:
    CustomFormat = tagged(CustomFormatText, CustomFormatGrammar)


class CustomTool(Wire):
    """A tool whose input is free text, optionally constrained by a grammar (Codex's ``apply_patch``)."""

    type: Literal["custom"]
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    format: CustomFormat | None = None
    defer_loading: bool | None = None


if TYPE_CHECKING:
    NamespacedTool = FunctionTool | CustomTool
else:
    NamespacedTool = tagged(FunctionTool, CustomTool)


class NamespaceTool(Wire):
    """A named group of function and custom tools; calls name the namespace and the tool."""

    type: Literal["namespace"]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str | None = None
    tools: list[NamespacedTool]


class ToolSearchTool(Wire):
    """Tool search (``S:ToolSearchToolParam``). Run by the client (``execution: "client"``) it is a tool like a
    function: the model calls it and the client answers with a ``tool_search_output``. Run by the server, it
    is a built-in respd has no executor for.
    """

    type: Literal["tool_search"]
    execution: Literal["server", "client"] | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None


TOOL_SEARCH = "tool_search"  # the function name a client-run tool search is offered and replayed under


class ComputerUsePreviewTool(Wire):
    """A virtual computer the client controls (``S:ComputerUsePreviewTool``): the model asks for one action per
    call (a ``computer_call``), the client performs it and answers with a screenshot."""

    type: Literal["computer_use_preview"]
    environment: Literal["windows", "mac", "linux", "ubuntu", "browser"]
    display_width: Annotated[int, Field(ge=1)]
    display_height: Annotated[int, Field(ge=1)]


class LocalShellTool(Wire):
    """Commands the client runs on its own machine (``S:LocalShellToolParam``), as ``local_shell_call`` items."""

    type: Literal["local_shell"]


class ShellEnvironment(BaseModel):
    """Where ``shell`` commands run: ``local`` (the client's machine) or a container respd would have to run."""

    model_config = ConfigDict(extra="allow")
    type: Literal["local", "container_auto", "container_reference"]


class ShellTool(Wire):
    """Shell commands (``S:FunctionShellToolParam``) as ``shell_call`` items. Without an environment, or with
    ``local``, the client runs them; a container environment is a tool the server would run."""

    type: Literal["shell"]
    environment: ShellEnvironment | None = None
    allowed_callers: list[Literal["direct", "programmatic"]] | None = None

    @property
    def client_run(self) -> bool:
        return self.environment is None or self.environment.type == "local"


class ApplyPatchTool(Wire):
    """File edits the client applies (``S:ApplyPatchToolParam``), as ``apply_patch_call`` items."""

    type: Literal["apply_patch"]
    allowed_callers: list[Literal["direct", "programmatic"]] | None = None


ClientTool = ComputerUsePreviewTool | LocalShellTool | ShellTool | ApplyPatchTool
CLIENT_TOOL_TYPES = frozenset({"computer_use_preview", "local_shell", "shell", "apply_patch"})


class BuiltinTool(BaseModel):
    """A tool the API runs itself (web_search, file_search, …); respd has no executor for these yet."""

    model_config = ConfigDict(extra="allow")
    type: str


# Tool types the spec defines that need an executor inside the server (tool_search only when the server
# runs it: it has its own model, which says who does).
BUILTIN_TOOL_TYPES = frozenset(
    {
        "file_search", "web_search", "web_search_2025_08_26", "web_search_preview",
        "web_search_preview_2025_03_11", "mcp", "code_interpreter", "image_generation", "computer",
        "computer_use_preview", "local_shell", "shell", "apply_patch", "tool_search",
        "programmatic_tool_calling",
    }
)  # fmt: skip
KNOWN_TOOL_TYPES = BUILTIN_TOOL_TYPES | {"function", "custom", "namespace"}

if TYPE_CHECKING:
    Tool = FunctionTool | CustomTool | NamespaceTool | ToolSearchTool | ClientTool | BuiltinTool
else:
    Tool = tagged(
        FunctionTool, CustomTool, NamespaceTool, ToolSearchTool, ComputerUsePreviewTool, LocalShellTool, ShellTool,
        ApplyPatchTool, catch_all=(BuiltinTool, BUILTIN_TOOL_TYPES - {"tool_search"} - CLIENT_TOOL_TYPES),
    )  # fmt: skip
