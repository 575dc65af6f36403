"""chatops: an asyncio chat-ops daemon that runs incident response from Slack.

This module is the public API for command authors::

    from chatops import Arg, Context, UserError, command
"""

from chatops.context import Context
from chatops.errors import UserError
from chatops.spec import Arg, CommandSpec, command

__all__ = ["Arg", "CommandSpec", "Context", "UserError", "command"]
__version__ = "0.1.0"
