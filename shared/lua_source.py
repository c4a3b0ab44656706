"""The sources of the Lua scripts in ``shared/lua/``, with their includes.

A line ``-- include: <file>`` is replaced by that file's text: functions several scripts
share (``durable.lua``) are written once and sent inside each script that uses them.
"""

from __future__ import annotations

import re
from importlib import resources

_INCLUDE = re.compile(r"^-- include: (\S+)$", re.MULTILINE)


def lua_source(name: str) -> str:
    """The source of ``shared/lua/<name>.lua``, includes resolved."""
    folder = resources.files("shared").joinpath("lua")
    text = folder.joinpath(f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda include: folder.joinpath(include[1]).read_text(), text)
