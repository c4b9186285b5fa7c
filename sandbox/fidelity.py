"""Install the sandbox's AWS rules into moto (in the server process, or in-process for tests).

moto is the store of state; the rule modules under ``sandbox/rules/`` make it answer as
AWS does where it does not, and add the time moto lacks through the one modeled clock in
``context.py``. The collection's code is never changed to suit the sandbox. sandbox/README.md
lists every rule with the AWS documentation it follows and the moto behaviour it corrects.
"""

from __future__ import annotations

from .context import CONTEXT, install_moto_clock

_INSTALLED = False


def install(context=CONTEXT):
    """Patch moto with every rule (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return context
    install_moto_clock()
    from .rules import install_all
    install_all(context)
    _INSTALLED = True
    return context
