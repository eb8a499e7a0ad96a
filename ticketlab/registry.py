"""A small name -> object registry for models, tasks and pruning methods."""

from __future__ import annotations

from typing import Callable, Collection, Generic, Iterator, TypeVar

from .errors import TicketlabError

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects registered by name, looked up with an error that lists the known names. With `names` (the torch-free
    list of ticketlab.catalog that the command line offers), only those may be registered."""

    def __init__(self, kind: str, names: Collection[str] | None = None):
        self.kind, self.names = kind, names
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if self.names is not None and name not in self.names:
                raise ValueError(f"{self.kind} {name!r} is not in ticketlab.catalog")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise TicketlabError(f"unknown {self.kind} {name!r}; known: {', '.join(self)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
