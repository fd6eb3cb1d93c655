"""A frontier chart as a PNG, with the standard library only (zlib, struct): a raster canvas, lines,
markers and a 5x7 pixel font of our own drawing for upper-case labels and numbers.

`frontier_png(xs, ys, ...)` draws the points and the staircase between them: the least cost at a
bound on the x value stays level from one point to the next slower (or higher-latency) one.
"""

from __future__ import annotations

import math
import struct
import zlib

WHITE, BLACK, GREY, LIGHT = (255, 255, 255), (30, 30, 30), (120, 120, 120), (225, 225, 225)
LINE, MARK, FIRST = (70, 110, 190), (200, 60, 40), (20, 140, 60)

# 5 x 7 glyphs, rows top to bottom; '#' is ink
_FONT_ROWS = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": (".###.", "#....", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "....#", ".###."),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "##.##", "#...#"),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    " ": (".....",) * 7,
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    ",": (".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "+": (".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."),
    "$": ("..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."),
    "%": ("##..#", "##..#", "...#.", "..#..", ".#...", "#..##", "#..##"),
    "(": ("...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."),
    ")": (".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."),
    "/": ("....#", "....#", "...#.", "..#..", ".#...", "#....", "#...."),
    ":": (".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."),
    "#": (".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."),
    "?": (".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."),
}
FONT = {c: [[ch == "#" for ch in row] for row in rows] for c, rows in _FONT_ROWS.items()}


class Canvas:
    def __init__(self, width: int, height: int, background=WHITE):
        self.w, self.h = width, height
        self.px = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, color) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            i = 3 * (y * self.w + x)
            self.px[i:i + 3] = bytes(color)

    def get(self, x: int, y: int) -> tuple[int, int, int]:
        i = 3 * (y * self.w + x)
        return tuple(self.px[i:i + 3])

    def rect(self, x0: int, y0: int, x1: int, y1: int, color) -> None:
        for y in range(max(0, y0), min(self.h, y1 + 1)):
            for x in range(max(0, x0), min(self.w, x1 + 1)):
                self.set(x, y, color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color, width: int = 1) -> None:
        """Bresenham, thickened by a square brush."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        r0, r1 = -(width // 2), width - width // 2 - 1
        while True:
            self.rect(x0 + r0, y0 + r0, x0 + r1, y0 + r1, color)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def disc(self, cx: int, cy: int, r: int, color) -> None:
        for y in range(cy - r, cy + r + 1):
            for x in range(cx - r, cx + r + 1):
                if (x - cx) ** 2 + (y - cy) ** 2 <= r * r:
                    self.set(x, y, color)

    def text(self, x: int, y: int, s: str, color=BLACK, scale: int = 2, anchor: str = "left") -> None:
        """Upper-case text with its top at y; anchor left, right or center on x."""
        s = s.upper()
        width = text_width(s, scale)
        x0 = {"left": x, "right": x - width, "center": x - width // 2}[anchor]
        for k, ch in enumerate(s):
            glyph = FONT.get(ch, FONT["?"])
            for r, row in enumerate(glyph):
                for c, ink in enumerate(row):
                    if ink:
                        self.rect(x0 + (6 * k + c) * scale, y + r * scale,
                                  x0 + (6 * k + c) * scale + scale - 1, y + r * scale + scale - 1, color)

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.px[3 * y * self.w:3 * (y + 1) * self.w]) for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def text_width(s: str, scale: int = 2) -> int:
    return max(0, 6 * len(s) - 1) * scale


def ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 x 10^k apart) covering [lo, hi] with about n ticks."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    if out[-1] < hi:
        out.append(round(out[-1] + step, 12))
    return out


def log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2 and 5 x 10^k from the one at or below lo to the one at or above hi."""
    vals = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
            for m in (1, 2, 5)]
    below = max(v for v in vals if v <= lo * (1 + 1e-12))
    above = min(v for v in vals if v >= hi * (1 - 1e-12))
    return [v for v in vals if below <= v <= above]


class Axes:
    """Maps data to pixels inside the plot area; y on a log scale when it spans more than 20x."""

    def __init__(self, xs, ys, box: tuple[int, int, int, int]):
        self.x0, self.y0, self.x1, self.y1 = box
        self.xt = ticks(min(xs), max(xs))
        self.logy = min(ys) > 0 and max(ys) / min(ys) > 20
        self.yt = log_ticks(min(ys), max(ys)) if self.logy else ticks(min(ys), max(ys))

    def _fy(self, y: float) -> float:
        if self.logy:
            return (math.log10(y) - math.log10(self.yt[0])) / (math.log10(self.yt[-1]) - math.log10(self.yt[0]))
        return (y - self.yt[0]) / (self.yt[-1] - self.yt[0])

    def px(self, x: float, y: float) -> tuple[int, int]:
        fx = (x - self.xt[0]) / (self.xt[-1] - self.xt[0])
        return (round(self.x0 + fx * (self.x1 - self.x0)), round(self.y1 - self._fy(y) * (self.y1 - self.y0)))


def frontier_png(xs: list[float], ys: list[float], xlabel: str, ylabel: str, title: str,
                 fmt_x, fmt_y, width: int = 900, height: int = 560) -> tuple[bytes, Axes]:
    """The chart's PNG bytes and its axes (for tests: where each point was drawn)."""
    c = Canvas(width, height)
    box = (130, 60, width - 40, height - 80)
    ax = Axes(xs, ys, box)
    x0, y0, x1, y1 = box
    for t in ax.xt:
        px, _ = ax.px(t, ax.yt[0])
        c.line(px, y0, px, y1, LIGHT)
        c.text(px, y1 + 10, fmt_x(t), GREY, anchor="center")
    for t in ax.yt:
        _, py = ax.px(ax.xt[0], t)
        c.line(x0, py, x1, py, LIGHT)
        c.text(x0 - 10, py - 7, fmt_y(t), GREY, anchor="right")
    c.line(x0, y1, x1, y1, BLACK, 2)
    c.line(x0, y0, x0, y1, BLACK, 2)
    c.text((x0 + x1) // 2, height - 36, xlabel, anchor="center")
    c.text(x0, 30, ylabel + (" (log scale)" if ax.logy else ""))
    c.text(width // 2, 8, title, anchor="center")
    # the staircase: least cost at a bound x stays at a point's cost until the next slower point
    pts = sorted(zip(xs, ys))
    for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
        ax_, ay_ = ax.px(xa, ya)
        bx, by = ax.px(xb, yb)
        c.line(ax_, ay_, bx, ay_, LINE, 2)
        c.line(bx, ay_, bx, by, LINE, 2)
    cheapest = min(range(len(xs)), key=lambda i: (ys[i], xs[i]))
    for i, (x, y) in enumerate(zip(xs, ys)):
        px, py = ax.px(x, y)
        c.disc(px, py, 6 if i == cheapest else 4, FIRST if i == cheapest else MARK)
    return c.png(), ax
