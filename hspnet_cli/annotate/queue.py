"""Which image each annotator sees next: the order, what is done, and leases.

The order is IMAGES_DIR's sorted images, or an ``--order`` list first (what ``hspnet select``
writes, or any list of relative paths) followed by the rest of the folder (``only_listed``
stops after the list). Paths are held in a compact :class:`~hspnet_cli.sources.discover.PathList`;
images themselves are opened only when shown.

A *lease* gives one client (a browser tab) an image for ``lease_seconds``; it is renewed every
time the client asks for work, and released when the client answers or closes the tab. An
image is handed to at most one client at a time, so two tabs or two annotators never label the
same image at once; the leases of a tab that vanished expire and their images go back to the
front of the queue.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.names import CONTROL_KEY, LeftOut
from hspnet_cli.sources.discover import PathList, discover_images, read_path_list


@dataclass
class Lease:
    """One image handed to one client until ``expires`` (time.monotonic seconds)."""

    image: str
    position: int
    client: str
    expires: float


def build_order(
    images_dir: str | Path,
    order_file: str | Path | None = None,
    only_listed: bool = False,
    left_out: LeftOut | None = None,
    exclude: tuple[str | Path, ...] = (),
) -> PathList:
    """The queue order: the ``order_file`` paths (file order), then the folder's other images;
    images named by an ``exclude`` list (e.g. hspnet dedup's non-keepers) are left out of both.

    The one rule for names (:mod:`hspnet_cli.core.names`) applies, in its labeling-loop form:
    names with a control character, names that are not UTF-8 (the page, the API and the
    labels log are UTF-8 text) and names with a backslash (image URLs refuse it) are left out
    and counted in ``left_out``.

    Raises:
        UserError: The folder or list cannot be read, a listed path leaves the folder, or
            there is no image at all.
    """
    left_out = left_out if left_out is not None else LeftOut(str(images_dir))
    skipped: Counter = Counter()

    def kept(paths: PathList) -> PathList:
        return PathList(p for p in paths if left_out.check(p, utf8=True, backslash=True))

    if order_file is None:
        order = kept(discover_images(images_dir, skipped))
    else:
        order = kept(read_path_list(order_file, images_dir, left_out))
        if not only_listed:
            listed = set(order)
            for rel in discover_images(images_dir, skipped):
                if rel not in listed and left_out.check(rel, utf8=True, backslash=True):
                    order.append(rel)
    if skipped[CONTROL_KEY]:
        left_out.counts[CONTROL_KEY] += skipped[CONTROL_KEY]
    if exclude:
        excluded = {rel for file in exclude for rel in read_path_list(file, images_dir)}
        order = PathList(rel for rel in order if rel not in excluded)
    if not len(order):
        what = f"listed in {order_file}" if order_file is not None else f"found under {images_dir}"
        raise UserError(f"no images {what}; nothing to annotate")
    return order


class WorkQueue:
    """Hands out images in order, skipping those done or leased to another client.

    Args:
        order: Every image, in the order to annotate.
        is_done: True for images that already have an answer (the label store's state).
        lease_seconds: How long a lease lasts without the client renewing it.
        clock: Monotonic time source (tests pass a fake one).
    """

    def __init__(
        self,
        order: PathList,
        is_done: Callable[[str], bool],
        lease_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.order = order
        self.is_done = is_done
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.lock = threading.RLock()
        self._cursor = 0  # every position before it is done, leased or in _returned
        self._returned: list[int] = []  # positions whose lease expired or was released (a heap)
        self._leases: dict[str, Lease] = {}  # image -> lease
        self._position: dict[str, int] = {}  # image -> position, for images leased at least once
        # Done before this run: one pass over the paths now, so counting later never walks them again.
        self._done_at_start = sum(1 for image in order if is_done(image))

    def __len__(self) -> int:
        return len(self.order)

    def held_by(self, client: str) -> list[Lease]:
        """The client's live leases, in queue order."""
        with self.lock:
            self._expire()
            return sorted((l for l in self._leases.values() if l.client == client), key=lambda l: l.position)

    def _expire(self) -> None:
        now = self.clock()
        for image in [i for i, l in self._leases.items() if l.expires <= now]:
            position = self._leases.pop(image).position
            if position >= 0:
                heapq.heappush(self._returned, position)

    def _free(self, position: int) -> bool:
        image = self.order[position]
        return image not in self._leases and not self.is_done(image)

    def _next_free(self) -> int | None:
        while self._returned:
            position = heapq.heappop(self._returned)
            if self._free(position):
                return position
        while self._cursor < len(self.order):
            position = self._cursor
            self._cursor += 1
            if self._free(position):
                return position
        return None

    def lease(self, client: str, want: int) -> list[Lease]:
        """Renew the client's leases and top them up to ``want`` images; return them in order."""
        with self.lock:
            self._expire()
            now = self.clock()
            held = [l for l in self._leases.values() if l.client == client]
            for item in held:
                item.expires = now + self.lease_seconds
            held = [l for l in held if not self.is_done(l.image)]
            while len(held) < want:
                position = self._next_free()
                if position is None:
                    break
                item = Lease(self.order[position], position, client, now + self.lease_seconds)
                self._leases[item.image] = item
                self._position[item.image] = position
                held.append(item)
            return sorted(held, key=lambda l: l.position)

    def grant(self, client: str, image: str) -> Lease:
        """Lease ``image`` to ``client`` now (undo brings an answered image back to its annotator)."""
        with self.lock:
            current = self._leases.get(image)
            if current is not None and current.client != client:
                raise UserError(f"{image} is being annotated in another tab right now")
            position = self._position.get(image, -1)
            item = Lease(image, position, client, self.clock() + self.lease_seconds)
            self._leases[image] = item
            return item

    def finish(self, client: str, image: str) -> None:
        """Drop the lease on an answered image (the image is done, so it is not returned)."""
        with self.lock:
            lease = self._leases.get(image)
            if lease is not None and lease.client == client:
                del self._leases[image]

    def owner(self, image: str) -> str | None:
        """The client holding a live lease on ``image``, if any."""
        with self.lock:
            self._expire()
            lease = self._leases.get(image)
            return lease.client if lease else None

    def release(self, client: str) -> int:
        """Give back every lease of ``client`` (a tab closed); returns how many."""
        with self.lock:
            mine = [i for i, l in self._leases.items() if l.client == client]
            for image in mine:
                lease = self._leases.pop(image)
                if lease.position >= 0:
                    heapq.heappush(self._returned, lease.position)
            return len(mine)

    def done_count(self) -> int:
        """Images of this queue with an answer, 'none' or skip (those of this run were all leased)."""
        with self.lock:
            return self._done_at_start + sum(1 for image in self._position if self.is_done(image))

    def leased_count(self) -> int:
        """Images leased right now (to any client)."""
        with self.lock:
            self._expire()
            return len(self._leases)
