"""Tasks, registered by name (one file per family)."""

from ..registry import Registry
from .base import Task
from .sentiment import RottenTomatoes

TASKS: Registry[Task] = Registry("task")
TASKS.register(RottenTomatoes.name)(RottenTomatoes())

__all__ = ["TASKS", "Task"]
