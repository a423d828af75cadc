"""Follow boxes between analysed frames: an OpenCV tracker, interpolation when it loses the object.

At an analysed frame every source's box is known ("analysis"). On the frames after it, each box
follows its object ("tracker") on a frame scaled to at most `TRACK_SIDE` pixels, for speed:

- `template` (default): OpenCV template matching (`cv2.matchTemplate`, normalised correlation) of
  the object's patch in a window around its last position; the patch is refreshed from confident
  matches so slow changes of appearance are followed. The match score says when it is lost, and
  so does a match that is not unique: where every place in the window matches about as well (a
  flat patch on flat background), the best score is high but says nothing of where the object
  is; taking it sent a box to the window's corner (`[0, 0, 60, 60]`) and called it tracked.
- `mil`: `cv2.TrackerMIL`, the one learning tracker in opencv-python-headless itself (CSRT and KCF
  need the contrib build; Nano, Vit and DaSiamRPN need network files). It lags objects that move
  more than a few pixels a frame and always answers, so its box is checked against the object's
  colours at the analysed frame (histogram intersection under `MIN_SIMILARITY`: lost).

Either way a box is lost when it leaves the frame, or when it and its surroundings are flat (no
texture: nothing to follow). A lost box then moves linearly, by time, from
its last good position to the same source's box at the next analysed frame ("interpolation"), or
stays where it was when there is no next box ("held").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

TRACK_SIDE = 320  # longest side of the frame the tracker sees
MIN_SIMILARITY = 0.5  # mil: share of the object's colour mass that the tracked box must still cover
MIN_SCORE = 0.6  # template: match score under which the object is lost
MIN_PLAIN_SCORE = 0.95  # template, comparing plain differences (a flat patch): the same, stricter
REFRESH_SCORE = 0.9  # template: matches this good refresh the patch (10% a frame)
TRACKERS = ("template", "mil")
NEAR_BEST = 0.02  # template: matches within this of the best score are as good as the best
MAX_SPREAD = 0.25  # template: as good matches spread wider than this share of the patch side: ambiguous
FLAT_STD = 2.0  # a region whose every channel varies less than this (of 255) has no texture
MIN_INSIDE = 0.5  # fraction of the box that must stay inside the frame

ORIGINS = ("analysis", "tracker", "interpolation", "held")


@dataclass
class Anchor:
    """An analysed frame's boxes: one item per source, `{"source", "audio_class", "box"}`."""

    time_s: float
    items: list[dict]


def match_sources(a: list[dict], b: list[dict]) -> dict[int, dict]:
    """For each source of `a`, the item of `b` it continues as: same index and sound, else same sound."""
    out: dict[int, dict] = {}
    by_class: dict[str, dict] = {}
    for item in b:
        by_class.setdefault(item["audio_class"].strip().lower(), item)
    for item in a:
        same = next((x for x in b if x["source"] == item["source"]), None)
        key = item["audio_class"].strip().lower()
        if same is not None and same["audio_class"].strip().lower() == key:
            out[item["source"]] = same
        elif key in by_class:
            out[item["source"]] = by_class[key]
    return out


def _hist(bgr: np.ndarray, box: list[int]) -> np.ndarray | None:
    x1, y1, x2, y2 = box
    patch = bgr[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)]
    if patch.size == 0:
        return None
    h = cv2.calcHist([patch], [0, 1, 2], None, [8, 8, 8], [0, 256, 0, 256, 0, 256])
    return cv2.normalize(h, h, 1.0, 0.0, cv2.NORM_L1).flatten()


def _around(bgr: np.ndarray, box: list[int]) -> np.ndarray:
    """The box grown by half its size on each side, inside the frame."""
    x1, y1, x2, y2 = box
    mx, my = max(2, (x2 - x1) // 2), max(2, (y2 - y1) // 2)
    return bgr[max(0, y1 - my) : max(0, y2 + my), max(0, x1 - mx) : max(0, x2 + mx)]


def _inside(box: list[int], w: int, h: int) -> float:
    x1, y1, x2, y2 = box
    area = max(1, (x2 - x1) * (y2 - y1))
    ix = max(0, min(x2, w) - max(x1, 0))
    iy = max(0, min(y2, h) - max(y1, 0))
    return ix * iy / area


class TemplateTracker:
    """Finds the object's patch again near where it was: normalised correlation in a search window."""

    def init(self, bgr: np.ndarray, rect: tuple[int, int, int, int]) -> None:
        """Remember the patch under `rect` (x, y, w, h)."""
        x, y, w, h = rect
        self.patch = bgr[y : y + h, x : x + w].astype(np.float32)
        self.rect = (x, y, self.patch.shape[1], self.patch.shape[0])

    def update(self, bgr: np.ndarray) -> tuple[bool, tuple[int, int, int, int]]:
        """The best match within a window of the box's size on each side; ok when it scores well."""
        x, y, w, h = self.rect
        ph, pw = self.patch.shape[:2]
        m = max(8, w, h)
        x0, y0 = max(0, x - m), max(0, y - m)
        window = bgr[y0 : min(bgr.shape[0], y + h + m), x0 : min(bgr.shape[1], x + w + m)].astype(np.float32)
        if window.shape[0] < ph or window.shape[1] < pw:
            return False, self.rect
        # a flat patch has no variance to correlate: compare plain differences instead
        found = None
        if not _flat(self.patch):
            found = self._best(cv2.matchTemplate(window, self.patch, cv2.TM_CCOEFF_NORMED), MIN_SCORE)
        if found is None:
            # a flat patch has no variance to correlate, and a nearly flat one (a plain object whose
            # edges the codec blurred) correlates its noise: compare plain differences, more strictly
            found = self._best(1.0 - cv2.matchTemplate(window, self.patch, cv2.TM_SQDIFF_NORMED), MIN_PLAIN_SCORE)
        if found is None:
            return False, self.rect
        score, loc = found
        self.rect = (x0 + loc[0], y0 + loc[1], w, h)
        if score >= REFRESH_SCORE:
            seen = window[loc[1] : loc[1] + ph, loc[0] : loc[0] + pw]
            self.patch = 0.9 * self.patch + 0.1 * seen
        return True, self.rect

    def _best(self, scores: np.ndarray, minimum: float) -> tuple[float, tuple[int, int]] | None:
        """The best score and its place, or None when it is too low or not unique."""
        _, score, _, loc = cv2.minMaxLoc(scores)
        ph, pw = self.patch.shape[:2]
        if not score >= minimum or _spread(scores, score) > max(2, MAX_SPREAD * min(pw, ph)):
            return None  # no good place, or no one best place: the object is not told apart from its surroundings
        return score, (loc[0], loc[1])


def _flat(pixels: np.ndarray) -> bool:
    """No texture: every channel nearly constant."""
    return pixels.size == 0 or float(pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max()) <= FLAT_STD


def _spread(scores: np.ndarray, best: float) -> int:
    """How far apart (pixels, the larger of x and y) the places scoring about as well as the best lie."""
    near = np.argwhere(scores >= best - NEAR_BEST)
    return int((near.max(axis=0) - near.min(axis=0)).max()) if len(near) else 0


@dataclass
class _Track:
    item: dict
    tracker: cv2.Tracker | TemplateTracker | None  # None: the box was too small to follow
    template: np.ndarray | None
    last_box: list[int]
    last_time: float
    lost: bool = False


@dataclass
class Follower:
    """Feed frames in order with `step`; call `anchor` on analysed frames (with the next anchor, if any)."""

    width: int
    height: int
    tracker: str = "template"
    scale: float = field(init=False)
    tracks: list[_Track] = field(default_factory=list)
    target: dict[int, dict] = field(default_factory=dict)
    target_time: float | None = None

    def __post_init__(self) -> None:
        self.scale = min(1.0, TRACK_SIDE / max(self.width, self.height))

    def _small(self, rgb: np.ndarray) -> np.ndarray:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if self.scale < 1.0:
            size = (max(1, round(self.width * self.scale)), max(1, round(self.height * self.scale)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        return bgr

    def _to_small(self, box: list[int]) -> list[int]:
        return [round(v * self.scale) for v in box]

    def anchor(self, rgb: np.ndarray, anchor: Anchor, following: Anchor | None) -> list[dict]:
        """Start following the boxes of an analysed frame; return them as this frame's drawing."""
        small = self._small(rgb)
        self.tracks = []
        for item in anchor.items:
            sx1, sy1, sx2, sy2 = self._to_small(item["box"])
            tracker, template = None, None
            if sx2 - sx1 >= 2 and sy2 - sy1 >= 2:
                tracker = cv2.TrackerMIL.create() if self.tracker == "mil" else TemplateTracker()
                tracker.init(small, (sx1, sy1, sx2 - sx1, sy2 - sy1))
                template = _hist(small, [sx1, sy1, sx2, sy2]) if self.tracker == "mil" else None
            self.tracks.append(_Track(item, tracker, template, list(item["box"]), anchor.time_s, lost=tracker is None))
        self.target = match_sources(anchor.items, following.items) if following else {}
        self.target_time = following.time_s if following else None
        return [{**t.item, "box": list(t.item["box"]), "origin": "analysis"} for t in self.tracks]

    def step(self, rgb: np.ndarray, time_s: float) -> list[dict]:
        """The boxes on a frame between analysed ones, each with where it came from."""
        small = self._small(rgb) if any(not t.lost for t in self.tracks) else None
        out = []
        for t in self.tracks:
            # a track is lost from the start when it has no tracker; `small` exists while one is not lost
            if not t.lost and t.tracker is not None and small is not None:
                ok, (x, y, w, h) = t.tracker.update(small)
                box = [round(v / self.scale) for v in (x, y, x + w, y + h)]
                if self.tracker == "mil" and ok:
                    seen = _hist(small, [x, y, x + w, y + h])
                    ok = (
                        seen is not None
                        and t.template is not None
                        and cv2.compareHist(t.template, seen, cv2.HISTCMP_INTERSECT) >= MIN_SIMILARITY
                    )
                if ok and _flat(_around(small, [x, y, x + w, y + h])):
                    ok = False  # the box and its surroundings are one flat colour: nothing there to follow
                if ok and _inside(box, self.width, self.height) >= MIN_INSIDE:
                    t.last_box, t.last_time = self._clip(box), time_s
                    out.append({**t.item, "box": t.last_box, "origin": "tracker"})
                    continue
                t.lost = True
            out.append({**t.item, **self._fallback(t, time_s)})
        return out

    def _fallback(self, t: _Track, time_s: float) -> dict:
        goal = self.target.get(t.item["source"])
        if goal is None or self.target_time is None or self.target_time <= t.last_time:
            return {"box": list(t.last_box), "origin": "held"}
        f = min(1.0, max(0.0, (time_s - t.last_time) / (self.target_time - t.last_time)))
        box = [round(a + (b - a) * f) for a, b in zip(t.last_box, goal["box"])]
        return {"box": self._clip(box), "origin": "interpolation"}

    def _clip(self, box: list[int]) -> list[int]:
        x1, y1, x2, y2 = box
        x1, x2 = sorted((min(max(x1, 0), self.width), min(max(x2, 0), self.width)))
        y1, y2 = sorted((min(max(y1, 0), self.height), min(max(y2, 0), self.height)))
        return [x1, y1, x2, y2]
