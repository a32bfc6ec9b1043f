"""An RGB picture of a floor, drawn with numpy alone (the env's ``render()`` for ``"rgb_array"``).

Why here and why numpy: PettingZoo's and Gymnasium's clients (SuperSuit, video
recorders, TorchRL's pixel transforms) expect ``render()`` to return an
``(H, W, 3)`` ``uint8`` frame; drawing it with pygame or matplotlib would add a
runtime dependency (and a display) to every install for a picture of squares
and discs.

The picture follows rware's colours, so a frame reads like rware's own viewer:
white highway cells (storage cells light grey, so the aisles show), dark goal
cells, shelves as dark slate-blue squares (teal when requested), robots as
orange discs (red when loaded) with a black bar from the centre to the edge in
the direction the robot faces, and a one-pixel black grid. A carried shelf is
drawn under its robot, so a loaded robot sits on a square of its shelf's colour.

Each cell is ``cell`` pixels square; the frame is ``(height * cell + 1,
width * cell + 1, 3)`` (the grid's closing line). It reads the floor's public
read-only views only (``cells``, ``headings``, ``cargo``, ``shelf_cells``,
``requested``, ``highway``, ``goal_cells``), the live floor rather than any
robot's possibly stale view.
"""
from __future__ import annotations

import functools

import numpy as np

from desim.models.warehouse.floor import Direction, Floor

__all__ = ["CELL_PX", "COLORS", "floor_rgb"]

CELL_PX = 32
COLORS: dict[str, tuple[int, int, int]] = {
    "highway": (255, 255, 255),
    "storage": (228, 228, 228),
    "goal": (60, 60, 60),
    "shelf": (72, 61, 139),
    "requested": (0, 128, 128),
    "robot": (255, 140, 0),
    "loaded": (255, 0, 0),
    "heading": (0, 0, 0),
    "grid": (0, 0, 0),
}


@functools.lru_cache(maxsize=8)
def _tiles(cell: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-cell stencils (``(cell, cell)`` bool): a shelf square, a robot disc, and a heading
    bar per :class:`Direction` (``(4, cell, cell)``); cached, they depend only on ``cell``."""
    if cell < 8:
        raise ValueError(f"cell must be at least 8 pixels, got {cell}")
    r = np.arange(cell) + 0.5  # pixel centres; the tile's centre is cell / 2
    y, x = np.meshgrid(r, r, indexing="ij")
    c = cell / 2
    margin = max(2, cell // 10)
    shelf = np.zeros((cell, cell), dtype=bool)
    shelf[margin:cell - margin, margin:cell - margin] = True
    radius = 0.34 * cell
    disc = (y - c) ** 2 + (x - c) ** 2 <= radius ** 2
    half = max(1.0, cell / 16)  # half the bar's width
    bars = np.zeros((4, cell, cell), dtype=bool)
    bars[Direction.UP] = (np.abs(x - c) <= half) & (y <= c) & (y >= c - radius)
    bars[Direction.DOWN] = (np.abs(x - c) <= half) & (y >= c) & (y <= c + radius)
    bars[Direction.LEFT] = (np.abs(y - c) <= half) & (x <= c) & (x >= c - radius)
    bars[Direction.RIGHT] = (np.abs(y - c) <= half) & (x >= c) & (x <= c + radius)
    for t in (shelf, disc, bars):
        t.flags.writeable = False
    return shelf, disc, bars


def _paint(pix: np.ndarray, flat: np.ndarray, width: int, stencil: np.ndarray, colors: np.ndarray) -> None:
    """Colour ``stencil``'s pixels in each of the cells ``flat`` (one colour per cell, ``(k, 3)``)."""
    if len(flat) == 0:
        return
    ys, xs = np.divmod(flat, width)
    tiles = pix[ys, xs]  # (k, cell, cell, 3), a copy
    tiles[:, stencil] = colors[:, None, :]
    pix[ys, xs] = tiles


def floor_rgb(floor: Floor, cell: int = CELL_PX) -> np.ndarray:
    """The floor as an ``(height * cell + 1, width * cell + 1, 3)`` ``uint8`` RGB frame (see the module docstring)."""
    shelf_t, disc_t, bars_t = _tiles(cell)
    H, W = floor.height, floor.width
    col = {k: np.array(v, dtype=np.uint8) for k, v in COLORS.items()}
    ground = np.where(floor.highway[:, None], col["highway"], col["storage"])  # (cells, 3)
    ground[floor.goal_cells] = col["goal"]
    pix = np.empty((H, W, cell, cell, 3), dtype=np.uint8)  # per cell, per pixel row, per pixel column
    pix[:] = ground.reshape(H, W, 1, 1, 3)
    # shelves (a carried shelf's cell is its robot's), then robots on top
    shelf_col = np.where(floor.requested[:, None], col["requested"], col["shelf"])
    _paint(pix, np.asarray(floor.shelf_cells), W, shelf_t, shelf_col)
    cells, heads = np.asarray(floor.cells), np.asarray(floor.headings)
    robot_col = np.where((np.asarray(floor.cargo) >= 0)[:, None], col["loaded"], col["robot"])
    _paint(pix, cells, W, disc_t, robot_col)
    for d in Direction:
        mine = heads == int(d)
        _paint(pix, cells[mine], W, bars_t[int(d)], np.broadcast_to(col["heading"], (int(mine.sum()), 3)))
    pix[:, :, 0, :] = col["grid"]  # each cell's top and left edge; the frame closes below and right
    pix[:, :, :, 0] = col["grid"]
    img = pix.transpose(0, 2, 1, 3, 4).reshape(H * cell, W * cell, 3)
    out = np.empty((H * cell + 1, W * cell + 1, 3), dtype=np.uint8)
    out[:-1, :-1] = img
    out[-1, :], out[:, -1] = col["grid"], col["grid"]
    return out
