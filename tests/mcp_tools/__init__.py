"""The MCP tools (SPEC §12), in-process; tests/test_mcp_processes.py drives real servers."""

# The tools SPEC §12 names, in the order `tools/list` gives them.
TOOL_NAMES = [
    "add_task",
    "list_tasks",
    "get_task",
    "update_task",
    "complete_task",
    "delete_task",
    "task_stats",
    "list_tags",
]
