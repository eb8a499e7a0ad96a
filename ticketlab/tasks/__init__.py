"""Tasks, registered by name (one file per family)."""

from .. import catalog
from ..registry import Registry
from .base import Task
from .glue import GLUE_TASKS
from .images import IMAGE_TASKS
from .mlm import MaskedLanguageModeling
from .sentiment import RottenTomatoes
from .squad import Squad

TASKS: Registry[Task] = Registry("task", catalog.TASKS)
for task in (RottenTomatoes(), *GLUE_TASKS, Squad(), MaskedLanguageModeling(), *IMAGE_TASKS):
    TASKS.register(task.name)(task)

__all__ = ["TASKS", "Task"]
