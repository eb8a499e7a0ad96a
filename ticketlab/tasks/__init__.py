"""Tasks, registered by name (one file per family)."""

from ..registry import Registry
from .base import Task
from .mlm import MaskedLanguageModeling
from .sentiment import RottenTomatoes

TASKS: Registry[Task] = Registry("task")
for task in (RottenTomatoes(), MaskedLanguageModeling()):
    TASKS.register(task.name)(task)

__all__ = ["TASKS", "Task"]
