"""The one rate every working point converts through: the LHC bunch-crossing rate.

Kept in its own dependency-free module so the command line can show it as a default without
importing numpy (``hepad.metrics.COLLISION_RATE_HZ`` is the same object).
"""

from __future__ import annotations

#: The LHC bunch-crossing rate seen by the Level-1 trigger, in Hz.
COLLISION_RATE_HZ = 40e6

__all__ = ["COLLISION_RATE_HZ"]
