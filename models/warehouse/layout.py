"""Warehouse floor layouts, built exactly as rware 2.0.0 builds them.

Coordinates follow rware: a cell is ``(x, y)`` with ``x`` the column and ``y``
the row (row 0 at the top); 2-D arrays are indexed ``[y, x]``.

Two ways to build a layout, mirroring ``rware.warehouse.Warehouse``:

- :meth:`Layout.from_params` / :meth:`Layout.from_size` reproduce
  ``_make_layout_from_params`` (shelf blocks of two columns, highways every
  third column and every ``column_height + 1`` rows, a delivery row at the
  bottom with two goals in the middle, and a queueing lane above the goals).
- :meth:`Layout.from_ascii` / :meth:`Layout.from_file` reproduce
  ``_make_layout_from_str``: ``x`` shelf, ``g`` goal, ``.`` highway
  (case-insensitive, spaces ignored). Goals are highway cells.

Every non-highway cell holds one shelf at reset; shelves are numbered in
row-major order (rware's ``Shelf.id - 1``). Goals keep rware's order
(parameter layouts: left goal then right goal; ASCII maps: row-major).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# rware/__init__.py: _sizes = {name: (shelf_rows, shelf_columns)}; column_height 8.
SIZES: dict[str, tuple[int, int]] = {
    "tiny": (1, 3),
    "small": (2, 3),
    "medium": (2, 5),
    "large": (3, 5),
}
# rware/__init__.py: request_queue_size = int(n_agents * difficulty)
DIFFICULTY: dict[str, float] = {"easy": 2.0, "": 1.0, "hard": 0.5}
DEFAULT_COLUMN_HEIGHT = 8
DEFAULT_MAX_STEPS = 500

_TASK_RE = re.compile(
    r"^(?:rware-)?(?P<size>tiny|small|medium|large)-(?P<n>\d+)ag(?:-(?P<diff>easy|hard))?(?:-v2)?$"
)


@dataclass(frozen=True, eq=False)
class Layout:
    """Static floor plan: grid shape, highway mask, goals and shelf cells.

    ``highway`` is a read-only ``bool`` array of shape ``(height, width)``.
    ``goals`` and ``shelf_cells`` are tuples of ``(x, y)``.
    """

    height: int
    width: int
    highway: np.ndarray
    goals: tuple[tuple[int, int], ...]
    name: str = ""
    shelf_cells: tuple[tuple[int, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        hw = np.array(self.highway, dtype=bool, copy=True)
        if hw.shape != (self.height, self.width):
            raise ValueError(
                f"highway mask shape {hw.shape} does not match grid ({self.height}, {self.width})"
            )
        hw.setflags(write=False)
        object.__setattr__(self, "highway", hw)
        goals = tuple((int(x), int(y)) for x, y in self.goals)
        if not goals:
            raise ValueError("layout has no goal cell: at least one goal is required")
        for x, y in goals:
            if not (0 <= x < self.width and 0 <= y < self.height):
                raise ValueError(f"goal ({x}, {y}) lies outside the {self.width}x{self.height} grid")
        object.__setattr__(self, "goals", goals)
        ys, xs = np.nonzero(~hw)  # row-major, like rware's reset()
        object.__setattr__(self, "shelf_cells", tuple(zip(xs.tolist(), ys.tolist())))

    # ------------------------------------------------------------------ views
    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``, rware's ``grid_size``."""
        return (self.height, self.width)

    @property
    def n_cells(self) -> int:
        return self.height * self.width

    @property
    def n_shelves(self) -> int:
        return len(self.shelf_cells)

    @property
    def goal_mask(self) -> np.ndarray:
        m = np.zeros(self.shape, dtype=bool)
        for x, y in self.goals:
            m[y, x] = True
        return m

    def to_ascii(self) -> str:
        """The map in rware's layout syntax (round-trips through :meth:`from_ascii`)."""
        rows = [["." if h else "x" for h in row] for row in self.highway]
        for x, y in self.goals:
            rows[y][x] = "g"
        return "\n".join("".join(r) for r in rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layout):
            return NotImplemented
        return self.shape == other.shape and self.goals == other.goals and bool(
            np.array_equal(self.highway, other.highway)
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.goals, self.highway.tobytes()))

    def __repr__(self) -> str:
        return (
            f"Layout(name={self.name!r}, shape={self.shape}, shelves={self.n_shelves}, "
            f"goals={len(self.goals)})"
        )

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_params(
        cls, shelf_columns: int, shelf_rows: int, column_height: int = DEFAULT_COLUMN_HEIGHT, name: str = ""
    ) -> "Layout":
        """rware's ``_make_layout_from_params`` (same grid, highways and goals)."""
        for label, v in (("shelf_columns", shelf_columns), ("shelf_rows", shelf_rows), ("column_height", column_height)):
            if int(v) != v or v < 1:
                raise ValueError(f"{label} must be a positive integer, got {v!r}")
        if shelf_columns % 2 != 1:
            raise ValueError(f"shelf_columns must be odd (rware), got {shelf_columns}")
        h = (column_height + 1) * shelf_rows + 2
        w = (2 + 1) * shelf_columns + 1
        ys, xs = np.indices((h, w))
        vertical = xs % 3 == 0
        horizontal = ys % (column_height + 1) == 0
        delivery_row = ys == h - 1
        queue = (ys > h - (column_height + 3)) & ((xs == w // 2 - 1) | (xs == w // 2))
        highway = vertical | horizontal | delivery_row | queue
        goals = ((w // 2 - 1, h - 1), (w // 2, h - 1))
        return cls(h, w, highway, goals, name=name or f"{shelf_rows}x{shelf_columns}-{column_height}h")

    @classmethod
    def from_size(cls, size: str, column_height: int = DEFAULT_COLUMN_HEIGHT) -> "Layout":
        """One of rware's registered sizes: ``tiny`` (1x3), ``small`` (2x3),
        ``medium`` (2x5), ``large`` (3x5); ``shelf_rows x shelf_columns``."""
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")
        rows, cols = SIZES[size]
        return cls.from_params(cols, rows, column_height, name=size)

    @classmethod
    def from_ascii(cls, text: str, name: str = "") -> "Layout":
        """rware's ``_make_layout_from_str``: ``x`` shelf, ``g`` goal, ``.`` highway.

        Case-insensitive; spaces are ignored; leading/trailing blank lines are
        stripped. Raises ``ValueError`` (one line) on a bad map.
        """
        if not isinstance(text, str):
            raise ValueError(f"layout must be a str, got {type(text).__name__}")
        text = text.replace("\r\n", "\n").strip().replace(" ", "")
        if not text:
            raise ValueError("layout is empty")
        lines = text.split("\n")
        width = len(lines[0])
        for y, line in enumerate(lines):
            if len(line) != width:
                raise ValueError(
                    f"layout must be rectangular: line {y + 1} has {len(line)} cells, line 1 has {width}"
                )
        highway = np.zeros((len(lines), width), dtype=bool)
        goals: list[tuple[int, int]] = []
        for y, line in enumerate(lines):
            for x, ch in enumerate(line):
                c = ch.lower()
                if c == "g":
                    goals.append((x, y))
                    highway[y, x] = True
                elif c == ".":
                    highway[y, x] = True
                elif c != "x":
                    raise ValueError(
                        f"invalid layout character {ch!r} at line {y + 1}, column {x + 1}; allowed: 'x' shelf, 'g' goal, '.' highway"
                    )
        if not goals:
            raise ValueError("layout has no goal cell ('g'): at least one goal is required")
        return cls(len(lines), width, highway, tuple(goals), name=name)

    @classmethod
    def from_file(cls, path: str | Path) -> "Layout":
        p = Path(path)
        return cls.from_ascii(p.read_text(), name=p.stem)


def rware_task(task: str) -> tuple[Layout, dict]:
    """Layout and Floor settings of a registered rware task id.

    ``"tiny-2ag"``, ``"rware-small-4ag-hard-v2"`` ... -> ``(layout, kwargs)`` with
    ``n_agents``, ``request_queue_size`` (``int(n_agents * difficulty)``),
    ``max_steps`` 500 and ``reward_type`` ``"individual"``, as registered.
    """
    m = _TASK_RE.match(task)
    if not m:
        raise ValueError(f"unrecognised rware task id {task!r} (expected e.g. 'tiny-2ag' or 'rware-small-4ag-hard-v2')")
    n = int(m["n"])
    diff = DIFFICULTY[m["diff"] or ""]
    return Layout.from_size(m["size"]), dict(
        n_agents=n,
        request_queue_size=int(n * diff),
        max_steps=DEFAULT_MAX_STEPS,
        reward_type="individual",
    )
