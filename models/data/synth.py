"""A synthetic surveillance anomaly benchmark, written in the UCF-Crime layout (`pvad synth`).

A fixed camera over a textured scene (ground texture, tiles or stripes, a wall/horizon, static objects;
different per video) with walking person-like figures: head, torso, swinging arms and legs, shadow;
sizes follow a perspective (smaller far away), colours and speeds vary. Normal figures walk between
waypoints, pause, cross each other, and some walk fast; pairs often pass close to each other so that
"two people near each other" or "motion" alone is not an anomaly.

Anomalous videos hold one event with an onset and an offset (0-based frames, inclusive):

* **Fighting**: two figures walk up to each other, then fast erratic contact motion (lunges, punching
  arms, leaning), then they walk away in opposite directions.
* **Fall**: a walking figure falls (rotates to horizontal), stays down, then gets up; the event ends
  when it is upright again.
* **Running**: a walking figure suddenly runs (about 2-3x the fastest normal walk, long strides, forward
  lean), sometimes with a second figure chasing it; the event ends when they slow back to a walk.
* **Throwing**: a figure stops and throws 2-4 small fast objects (wind-up, release, parabolic flight);
  the event ends when the last object lands or leaves the frame.

Files (read unchanged by ``models.data.vad.load_dataset``)::

    out/Anomaly-Videos/<Class>/<Class>NNN_x264.mp4            anomalous videos (320x240, mp4v)
    out/Normal_Videos/Normal_Videos_NNN_x264.mp4               normal videos
    out/Anomaly_Train.txt                                      training list (official format)
    out/Temporal_Anomaly_Annotation_for_Testing_Videos.txt     test videos only, 1-based frames (official format)
    out/vatic/<stem>.txt                                       every anomalous video, train and test: one track
                                                               per involved figure/object, lost=0 exactly during
                                                               the event (and while visible), lost=1 otherwise
    out/manifest.json                                          seed, parameters, per-video events

So the loader gives every anomalous training video HARD frames (from Vatic) and SOFT elsewhere, and test
videos HARD = Vatic ∪ temporal (identical here) with the rest SOFT (count SOFT as normal for evaluation,
as the paper does).

Deterministic: the same seed and parameters give byte-identical annotation files and manifest and identical
decoded frames (video *i* depends only on the seed, its index and its class).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pvad.errors import ConfigError

logger = logging.getLogger(__name__)

GENERATOR = "pvad.synth/1"
KINDS = ("Fighting", "Fall", "Running", "Throwing")
NORMAL_DIR = "Normal_Videos"
ANOMALY_DIR = "Anomaly-Videos"
TRAIN_LIST = "Anomaly_Train.txt"
TEMPORAL_FILE = "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"


@dataclass
class SynthParams:
    seed: int = 0
    videos: int = 40
    frames: int = 250
    fps: float = 25.0
    test_fraction: float = 0.3
    anomalous_fraction: float = 0.5
    width: int = 320
    height: int = 240
    kinds: tuple[str, ...] = KINDS
    #: normal walkers per video (inclusive range)
    walkers: tuple[int, int] = (2, 5)
    #: per-pixel sensor noise standard deviation (grey levels)
    noise: float = 2.5

    def check(self) -> None:
        if self.videos < 1:
            raise ConfigError(f"synth: videos={self.videos}: need at least 1")
        if self.frames < 60:
            raise ConfigError(f"synth: frames={self.frames}: need at least 60 (events last 1-4 s)")
        if not 1 <= self.fps <= 120:
            raise ConfigError(f"synth: fps={self.fps}: expected 1..120")
        if not 0 <= self.test_fraction < 1 or not 0 <= self.anomalous_fraction <= 1:
            raise ConfigError("synth: test_fraction must be in [0, 1), anomalous_fraction in [0, 1]")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ConfigError(f"synth: unknown event kinds {bad}; known: {', '.join(KINDS)}")
        if self.width < 160 or self.height < 120:
            raise ConfigError("synth: frames must be at least 160x120")


# ------------------------------------------------------------------------------------------- figures

WALK, POSED = 0, 1  # per-frame pose mode: derived from the motion, or set by an event script


@dataclass
class Figure:
    """A person-like figure: per-frame foot position, body angle and limb angles (radians)."""

    n: int
    scale: float
    shirt: tuple[int, int, int]
    pants: tuple[int, int, int]
    skin: tuple[int, int, int]
    fid: int = 0
    x: np.ndarray = field(init=False)
    y: np.ndarray = field(init=False)
    theta: np.ndarray = field(init=False)
    legs: np.ndarray = field(init=False)  # (n, 2)
    arms: np.ndarray = field(init=False)  # (n, 2)
    face: np.ndarray = field(init=False)
    mode: np.ndarray = field(init=False)
    h: np.ndarray = field(init=False)
    hfix: np.ndarray = field(init=False)  # height frozen (lying figure), NaN = from perspective

    def __post_init__(self) -> None:
        self.x = np.zeros(self.n)
        self.y = np.zeros(self.n)
        self.theta = np.zeros(self.n)
        self.legs = np.zeros((self.n, 2))
        self.arms = np.zeros((self.n, 2))
        self.face = np.ones(self.n)
        self.mode = np.full(self.n, WALK, np.uint8)
        self.h = np.zeros(self.n)
        self.hfix = np.full(self.n, np.nan)


@dataclass
class Projectile:
    t0: int
    xs: np.ndarray
    ys: np.ndarray
    r: int
    color: tuple[int, int, int]
    pid: int = 0

    @property
    def t1(self) -> int:
        return self.t0 + len(self.xs) - 1


class Scene:
    """Geometry of one video: horizon, walkable area, perspective."""

    def __init__(self, rng: np.random.Generator, w: int, h: int):
        self.w, self.h = w, h
        self.horizon = int(rng.uniform(0.25, 0.42) * h)
        self.y_min = self.horizon + 0.1 * h  # farthest feet
        self.y_max = h - 4
        self.h_far = rng.uniform(0.09, 0.13) * h
        self.h_near = rng.uniform(0.27, 0.34) * h

    def height(self, y: np.ndarray | float) -> np.ndarray | float:
        f = (np.asarray(y) - self.y_min) / (self.y_max - self.y_min)
        return self.h_far + np.clip(f, -0.3, 1.1) * (self.h_near - self.h_far)

    def interior(self, rng: np.random.Generator, margin: float = 0.2) -> tuple[float, float]:
        x = rng.uniform(margin, 1 - margin) * self.w
        y = rng.uniform(self.y_min + 0.3 * (self.y_max - self.y_min), self.y_max - 0.15 * (self.y_max - self.y_min))
        return float(x), float(y)


def _colour(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(lo, hi, 3))


def _new_figure(rng: np.random.Generator, n: int, fid: int) -> Figure:
    skin = [(60, 80, 120), (90, 120, 170), (120, 160, 210), (160, 190, 230)][int(rng.integers(4))]
    return Figure(n, float(rng.uniform(0.85, 1.15)), _colour(rng), _colour(rng, 10, 160),
                  tuple(int(c + rng.integers(-10, 10)) for c in skin), fid)


def _walk_line(fig: Figure, scene: Scene, t_from: int, t_to: int, start: tuple[float, float],
               direction: tuple[float, float], speed: float) -> None:
    """Frames [t_from, t_to): walk in a straight line from ``start`` (speed in px/frame per 50 px of height)."""
    x, y = start
    u = np.asarray(direction, float)
    u = u / (np.linalg.norm(u) + 1e-9)
    for t in range(max(t_from, 0), min(t_to, fig.n)):
        fig.x[t], fig.y[t] = x, y
        step = speed * scene.height(y) * fig.scale / 50.0
        x, y = x + u[0] * step, y + u[1] * step * 0.6


def _walk_to(fig: Figure, scene: Scene, t_arrive: int, point: tuple[float, float], direction: tuple[float, float],
             speed: float) -> None:
    """Frames [0, t_arrive): walk in a straight line so as to be at ``point`` at ``t_arrive``."""
    u = np.asarray(direction, float)
    u = u / (np.linalg.norm(u) + 1e-9)
    x, y = point
    for t in range(min(t_arrive, fig.n) - 1, -1, -1):
        step = speed * scene.height(y) * fig.scale / 50.0
        x, y = x - u[0] * step, y - u[1] * step * 0.6
        fig.x[t], fig.y[t] = x, y


def _wander(fig: Figure, scene: Scene, rng: np.random.Generator, t_from: int, t_to: int,
            start: tuple[float, float] | None, speed: float) -> None:
    """Frames [t_from, t_to): walk between random waypoints (often across the frame), with pauses."""
    w = scene.w
    if start is None:
        if rng.random() < 0.5:  # enter from a side
            start = (float(rng.choice([-0.08 * w, 1.08 * w])), float(rng.uniform(scene.y_min, scene.y_max)))
        else:
            start = scene.interior(rng, 0.05)
    x, y = start
    wp = None
    pause = 0
    for t in range(max(t_from, 0), min(t_to, fig.n)):
        fig.x[t], fig.y[t] = x, y
        if pause > 0:
            pause -= 1
            continue
        if wp is None:
            # prefer the other side of the frame: figures cross each other
            wx = (1 - x / w) * w + rng.normal(0, 0.2 * w) if rng.random() < 0.7 else rng.uniform(-0.1, 1.1) * w
            wp = (float(np.clip(wx, -0.12 * w, 1.12 * w)), float(rng.uniform(scene.y_min, scene.y_max)))
        dx, dy = wp[0] - x, wp[1] - y
        dist = math.hypot(dx, dy)
        step = speed * scene.height(y) * fig.scale / 50.0
        if dist <= step:
            x, y = wp
            wp = None
            if rng.random() < 0.25:
                pause = int(rng.integers(10, 50))
        else:
            x, y = x + dx / dist * step, y + dy / dist * step


def _finish_walk_pose(fig: Figure, scene: Scene) -> None:
    """Heights, facing and the walking pose (leg/arm swing from the distance covered) of WALK frames."""
    fig.h = np.where(np.isnan(fig.hfix), scene.height(fig.y) * fig.scale, fig.hfix)
    dx = np.diff(fig.x, prepend=fig.x[:1])
    dy = np.diff(fig.y, prepend=fig.y[:1])
    dist = np.hypot(dx, dy / 0.6)
    hs = fig.h / 50.0
    speed = dist / hs  # px/frame per 50 px of height
    phase = np.cumsum(np.pi * dist / (0.42 * fig.h))
    amp = np.clip(0.3 + 0.1 * speed, 0, 0.95) * np.clip(speed / 0.4, 0, 1)
    face = np.ones(fig.n)
    last = 1.0
    for t in range(fig.n):
        if abs(dx[t]) > 0.05:
            last = 1.0 if dx[t] > 0 else -1.0
        face[t] = last
    walk = fig.mode == WALK
    fig.face[walk] = face[walk]
    s = np.sin(phase)
    fig.legs[walk] = np.stack([amp * s, -amp * s], 1)[walk]
    fig.arms[walk] = np.stack([-0.8 * amp * s, 0.8 * amp * s], 1)[walk]
    fig.theta[walk] = (face * np.clip(0.035 * (speed - 2.0), 0, 0.3))[walk]


def _points(fig: Figure, t: int) -> tuple[np.ndarray, float, list[tuple[int, int, int]], int]:
    """Screen points [foot, hip, shoulder, head, legL, legR, armL, armR], head radius, limb thicknesses, torso."""
    h = fig.h[t]
    d = fig.face[t]
    hip = (0.0, 0.47 * h)
    sh = (0.0, 0.80 * h)
    head = (0.0, 0.90 * h)
    leg_len, arm_len = 0.48 * h, 0.36 * h
    body = [(0.0, 0.0), hip, sh, head]
    for a in fig.legs[t]:
        body.append((hip[0] + d * leg_len * math.sin(a), hip[1] - leg_len * math.cos(a)))
    for a in fig.arms[t]:
        body.append((sh[0] + d * arm_len * math.sin(a), sh[1] - arm_len * math.cos(a)))
    b = np.asarray(body)
    th = fig.theta[t]
    c, s = math.cos(th), math.sin(th)
    bx = b[:, 0] * c + b[:, 1] * s
    by = -b[:, 0] * s + b[:, 1] * c
    pts = np.stack([fig.x[t] + bx, fig.y[t] - by], 1)
    return pts, 0.085 * h, [max(1, round(0.085 * h)), max(1, round(0.06 * h))], max(2, round(0.16 * h))


def figure_box(fig: Figure, t: int, w: int, hgt: int) -> tuple[int, int, int, int] | None:
    """Box of the pixels the figure covers at frame t (clipped to the frame), or None when not visible."""
    pts, r, (leg_t, _arm_t), torso_t = _points(fig, t)
    pad = max(r, torso_t / 2, leg_t / 2) + 1
    x1, y1 = pts.min(0) - pad
    x2, y2 = pts.max(0) + pad
    x1, y1, x2, y2 = max(0, int(x1)), max(0, int(y1)), min(w - 1, math.ceil(x2)), min(hgt - 1, math.ceil(y2))
    return (x1, y1, x2, y2) if x1 < x2 and y1 < y2 else None


def _draw_figure(img: np.ndarray, fig: Figure, t: int) -> None:
    pts, r, (leg_t, arm_t), torso_t = _points(fig, t)
    p = [(round(a), round(b)) for a, b in pts]
    foot, hip, sh, head, ll, lr, al, ar = p
    aa = cv2.LINE_AA
    if abs(fig.theta[t]) < 0.6:  # shadow under the feet while upright
        cv2.ellipse(img, foot, (max(2, int(0.18 * fig.h[t])), max(1, int(0.04 * fig.h[t]))), 0, 0, 360,
                    (30, 30, 30), -1, aa)
    cv2.line(img, hip, ll, fig.pants, leg_t, aa)
    cv2.line(img, hip, lr, fig.pants, leg_t, aa)
    cv2.line(img, hip, sh, fig.shirt, torso_t, aa)
    cv2.line(img, sh, al, fig.shirt, arm_t, aa)
    cv2.line(img, sh, ar, fig.skin, arm_t, aa)
    cv2.circle(img, head, max(2, round(r)), fig.skin, -1, aa)


# ------------------------------------------------------------------------------------------- events


def _event_fight(rng, scene, figs, n, fps, t0):
    a, b = figs
    dur = int(rng.uniform(2.0, 4.0) * fps)
    t1 = min(t0 + dur - 1, n - 3)
    px, py = scene.interior(rng, 0.3)
    hs = scene.height(py) / 50.0
    gap = 0.2 * scene.height(py)
    sp_a, sp_b = rng.uniform(0.8, 1.4, 2)
    _walk_to(a, scene, t0, (px - gap, py), (1, rng.normal(0, 0.2)), sp_a)
    _walk_to(b, scene, t0, (px + gap, py + rng.normal(0, 2)), (-1, rng.normal(0, 0.2)), sp_b)
    for f, side in ((a, -1.0), (b, 1.0)):
        ax, ay = (px + side * gap, f.y[t0 - 1] if t0 > 0 else py)
        x, y = ax, ay
        for t in range(t0, t1 + 1):
            x = ax + np.clip(x - ax + rng.normal(0, 1.4 * hs), -0.12 * gap * 5, 0.12 * gap * 5)
            x = min(x, px - 0.05 * gap) if side < 0 else max(x, px + 0.05 * gap)
            y = ay + np.clip(y - ay + rng.normal(0, 0.6 * hs), -3 * hs, 3 * hs)
            f.x[t], f.y[t] = x, y
            f.mode[t] = POSED
            d = -side  # face the other fighter
            f.face[t] = d
            f.theta[t] = d * rng.uniform(0.05, 0.45)
            punch = (t - t0 + (0 if side < 0 else 2)) % int(rng.integers(3, 6)) < 2
            f.arms[t] = [rng.uniform(1.3, 1.9) if punch else rng.uniform(0.2, 1.0), rng.uniform(-0.6, 1.8)]
            f.legs[t] = rng.uniform(-0.6, 0.6, 2)
        _walk_line(f, scene, t1 + 1, n, (x, y), (side, rng.normal(0, 0.3)), rng.uniform(0.9, 1.5))
    return t1, [a, b], []


def _event_fall(rng, scene, figs, n, fps, t0):
    (f,) = figs
    d = 1.0 if rng.random() < 0.5 else -1.0
    fall = max(3, int(rng.uniform(0.3, 0.5) * fps))
    down = int(rng.uniform(1.5, 3.0) * fps)
    up = max(4, int(rng.uniform(0.6, 1.0) * fps))
    t1 = min(t0 + fall + down + up - 1, n - 3)
    px, py = scene.interior(rng, 0.3)
    _walk_to(f, scene, t0, (px, py), (d, rng.normal(0, 0.2)), rng.uniform(0.8, 1.6))
    hfix = scene.height(py) * f.scale
    for t in range(t0, t1 + 1):
        k = t - t0
        if k < fall:
            a = (k + 1) / fall
            ang = (math.pi / 2) * a * a  # accelerates like a fall
        elif k < fall + down:
            ang = math.pi / 2
        else:
            ang = (math.pi / 2) * (1 - (k - fall - down + 1) / up)
        f.x[t], f.y[t] = px, py
        f.hfix[t] = hfix
        f.mode[t] = POSED
        f.face[t] = d
        f.theta[t] = d * ang
        lying = fall <= k < fall + down
        f.legs[t] = [0.35, -0.15] if lying else [0.4 * math.sin(k), -0.3]
        f.arms[t] = [2.4, 1.2] if k < fall else ([1.6, 0.3] if lying else [1.2, 0.5])
    _walk_line(f, scene, t1 + 1, n, (px, py), (d, rng.normal(0, 0.2)), rng.uniform(0.8, 1.4))
    return t1, [f], []


def _event_run(rng, scene, figs, n, fps, t0):
    runner = figs[0]
    chaser = figs[1] if len(figs) > 1 else None
    dur = int(rng.uniform(1.5, 3.0) * fps)
    t1 = min(t0 + dur - 1, n - 3)
    px, py = scene.interior(rng, 0.25)
    d = 1.0 if px < scene.w / 2 else -1.0
    _walk_to(runner, scene, t0, (px, py), (d, rng.normal(0, 0.2)), rng.uniform(0.8, 1.3))
    run_speed = rng.uniform(5.0, 7.0)
    ang = rng.uniform(-0.5, 0.5)
    vel = np.array([d * math.cos(ang), math.sin(ang)])
    lo_x, hi_x = 0.04 * scene.w, 0.96 * scene.w
    x, y = px, py
    path = []
    for t in range(t0, t1 + 1):
        runner.x[t], runner.y[t] = x, y
        path.append((x, y))
        ramp = min(1.0, (t - t0 + 1) / 4)
        step = (1.0 + ramp * (run_speed - 1.0)) * scene.height(y) * runner.scale / 50.0
        x, y = x + vel[0] * step, y + vel[1] * step * 0.6
        if not lo_x <= x <= hi_x:
            vel[0] = -vel[0]
            x = float(np.clip(x, lo_x, hi_x))
        if not scene.y_min + 5 <= y <= scene.y_max - 2:
            vel[1] = -vel[1]
            y = float(np.clip(y, scene.y_min + 5, scene.y_max - 2))
    _walk_line(runner, scene, t1 + 1, n, (x, y), vel, rng.uniform(1.0, 1.5))
    involved = [runner]
    if chaser is not None:
        lag = int(rng.integers(3, 8))
        start = (px - d * 0.6 * scene.height(py), py + rng.normal(0, 3))
        _walk_to(chaser, scene, t0, start, (d, 0.0), rng.uniform(0.8, 1.3))
        cx, cy = start
        for t in range(t0, t1 + 1):
            chaser.x[t], chaser.y[t] = cx, cy
            tx, ty = path[max(0, t - t0 - lag)]
            dx, dy = tx - cx, ty - cy
            dist = math.hypot(dx, dy) + 1e-9
            sp = (1.0 if t - t0 < lag else 0.92 * run_speed) * scene.height(cy) * chaser.scale / 50.0
            s = min(sp, dist)
            cx, cy = cx + dx / dist * s, cy + dy / dist * s
        _walk_line(chaser, scene, t1 + 1, n, (cx, cy), vel, rng.uniform(1.0, 1.5))
        involved.append(chaser)
    return t1, involved, []


def _event_throw(rng, scene, figs, n, fps, t0, pid0=100):
    (f,) = figs
    px, py = scene.interior(rng, 0.22)
    d = 1.0 if px < scene.w / 2 else -1.0
    _walk_to(f, scene, t0, (px, py), (d, rng.normal(0, 0.2)), rng.uniform(0.8, 1.4))
    h = scene.height(py) * f.scale
    hs = h / 50.0
    throws = int(rng.integers(2, 5))
    wind, release, back = max(3, int(0.24 * fps)), max(2, int(0.1 * fps)), max(3, int(0.2 * fps))
    projectiles: list[Projectile] = []
    t = t0
    end = t0
    color = _colour(rng, 0, 255)
    for i in range(throws):
        if t + wind + release + back >= n - 3:
            break
        for k in range(wind + release + back):
            tt = t + k
            if k < wind:
                a = -2.6 * (k + 1) / wind
            elif k < wind + release:
                a = -2.6 + (2.6 + 1.6) * (k - wind + 1) / release
            else:
                a = 1.6 * (1 - (k - wind - release + 1) / back)
            f.arms[tt] = [a, -0.3]
            f.legs[tt] = [0.25, -0.25]
            f.theta[tt] = d * (-0.15 if k < wind else 0.2)
            f.mode[tt] = POSED
            f.face[tt] = d
            f.x[tt], f.y[tt] = px, py
        tr = t + wind + release - 1  # release frame: the object leaves the hand
        hand_x = px + d * 0.36 * h * math.sin(1.6)
        hand_y = py - 0.8 * h + 0.36 * h * math.cos(1.6)
        vx, vy = d * rng.uniform(7.0, 11.0) * hs, -rng.uniform(1.0, 3.5) * hs
        g = 0.3 * hs
        ground = py + rng.uniform(-0.1, 0.3) * h
        xs, ys = [], []
        x, y = hand_x, hand_y
        r = max(2, round(0.07 * h))
        while tt_ok(x, y, r, scene) and y <= ground and tr + len(xs) < n - 1:
            xs.append(x)
            ys.append(y)
            x, y, vy = x + vx, y + vy, vy + g
        if xs:
            projectiles.append(Projectile(tr + 1, np.asarray(xs), np.asarray(ys), r, color, pid0 + i))
            end = max(end, tr + len(xs))
        end = max(end, t + wind + release + back - 1)
        t += wind + release + back + int(rng.integers(2, max(3, int(0.4 * fps))))
    t1 = end
    for tt in range(t0, t1 + 1):  # stands between throws
        if f.mode[tt] == WALK:
            f.x[tt], f.y[tt] = px, py
            f.mode[tt] = POSED
            f.face[tt] = d
            f.arms[tt] = [0.1, -0.1]
            f.legs[tt] = [0.05, -0.05]
    _walk_line(f, scene, t1 + 1, n, (px, py), (-d, rng.normal(0, 0.2)), rng.uniform(0.9, 1.4))
    return t1, [f], projectiles


def tt_ok(x: float, y: float, r: int, scene: Scene) -> bool:
    return -r < x < scene.w + r and -r < y < scene.h + r


_EVENTS = {"Fighting": (_event_fight, 2), "Fall": (_event_fall, 1), "Running": (_event_run, 1),
           "Throwing": (_event_throw, 1)}


# ------------------------------------------------------------------------------------------- scenes


def _background(rng: np.random.Generator, scene: Scene) -> np.ndarray:
    w, h = scene.w, scene.h
    hz = scene.horizon
    img = np.empty((h, w, 3), np.float32)
    wall = np.asarray(_colour(rng, 60, 200), np.float32)
    ground = np.asarray(_colour(rng, 50, 180), np.float32)
    wall, ground = (0.45 * c + 0.55 * c.mean() for c in (wall, ground))  # muted, like real scenes
    # wall: vertical gradient; ground: gradient towards the camera
    gy = np.linspace(0, 1, hz, dtype=np.float32)[:, None, None]
    img[:hz] = wall * (0.8 + 0.3 * gy)
    gg = np.linspace(0, 1, h - hz, dtype=np.float32)[:, None, None]
    img[hz:] = ground * (0.85 + 0.3 * gg)
    # low-frequency texture
    small = rng.normal(0, 1, (h // 16 + 2, w // 16 + 2, 1)).astype(np.float32)
    tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    fine = rng.normal(0, 1, (h // 3 + 1, w // 3 + 1, 1)).astype(np.float32)
    fine = cv2.resize(fine, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    img += tex * rng.uniform(6, 18) + fine * rng.uniform(2, 7)
    img = np.clip(img, 0, 255).astype(np.uint8)
    style = int(rng.integers(3))
    line_col = tuple(int(c) for c in np.clip(ground * rng.uniform(0.55, 0.8), 0, 255))
    vx = rng.uniform(0.3, 0.7) * w
    if style == 0:  # floor tiles in perspective
        for k in range(-8, 9):
            cv2.line(img, (int(vx + k * 6), hz), (int(vx + k * w / 5), h), line_col, 1, cv2.LINE_AA)
        yy = hz + 4.0
        while yy < h:
            cv2.line(img, (0, int(yy)), (w, int(yy)), line_col, 1, cv2.LINE_AA)
            yy += 3 + (yy - hz) * 0.18
    elif style == 1:  # road / path stripes
        y0 = int(rng.uniform(scene.y_min, scene.y_max - 30))
        cv2.rectangle(img, (0, y0), (w, y0 + int(rng.uniform(18, 40))),
                      tuple(int(c) for c in np.clip(ground * 0.7, 0, 255)), -1)
        for xx in range(int(rng.uniform(0, 30)), w, 40):
            cv2.rectangle(img, (xx, y0 + 8), (xx + 18, y0 + 11), (200, 200, 200), -1)
    else:  # paving noise blotches
        for _ in range(int(rng.integers(15, 40))):
            c = (int(rng.uniform(0, w)), int(rng.uniform(hz, h)))
            cv2.ellipse(img, c, (int(rng.uniform(4, 20)), int(rng.uniform(2, 8))), 0, 0, 360,
                        tuple(int(v) for v in np.clip(ground * rng.uniform(0.7, 1.2), 0, 255)), -1, cv2.LINE_AA)
    # static objects: windows/doors on the wall, benches/bins/poles on the ground
    for _ in range(int(rng.integers(2, 6))):
        x0 = int(rng.uniform(0, w - 20))
        ww, hh = int(rng.uniform(10, 50)), int(rng.uniform(8, max(9, hz - 4)))
        y0 = int(rng.uniform(2, max(3, hz - hh)))
        cv2.rectangle(img, (x0, y0), (x0 + ww, y0 + hh), _colour(rng, 20, 230), -1)
    for _ in range(int(rng.integers(1, 4))):
        x0 = int(rng.uniform(0, w - 30))
        y0 = int(rng.uniform(hz + 2, hz + 25))
        cv2.rectangle(img, (x0, y0), (x0 + int(rng.uniform(12, 40)), y0 + int(rng.uniform(5, 14))),
                      _colour(rng, 20, 200), -1)
    cv2.line(img, (0, hz), (w, hz), tuple(int(c) for c in wall * 0.5), 2)
    return img


@dataclass
class Event:
    kind: str
    onset: int
    offset: int
    tracks: list[int]

    def as_dict(self) -> dict:
        return {"kind": self.kind, "onset": self.onset, "offset": self.offset, "tracks": self.tracks}


@dataclass
class SynthVideo:
    """One simulated video: the background, its figures and projectiles, and its event (if anomalous)."""

    name: str
    category: str
    n: int
    scene: Scene
    background: np.ndarray
    figures: list[Figure]
    projectiles: list[Projectile]
    events: list[Event]
    noise: list[tuple[np.ndarray, np.ndarray]]
    noise_idx: np.ndarray
    involved: set[int] = field(default_factory=set)

    def frame(self, t: int) -> np.ndarray:
        img = self.background.copy()
        for f in sorted(self.figures, key=lambda f: (f.y[t], f.fid)):
            if figure_box(f, t, self.scene.w, self.scene.h) is not None:
                _draw_figure(img, f, t)
        for p in self.projectiles:
            if p.t0 <= t <= p.t1:
                k = t - p.t0
                cv2.circle(img, (round(p.xs[k]), round(p.ys[k])), p.r, p.color, -1, cv2.LINE_AA)
        pos, neg = self.noise[int(self.noise_idx[t])]
        cv2.add(img, pos, dst=img)
        cv2.subtract(img, neg, dst=img)
        return img

    def tracks(self) -> dict[int, list[tuple[int, tuple[int, int, int, int], bool, str]]]:
        """{track id: [(frame, box, lost, label)]} for the figures/objects involved in the event."""
        out: dict[int, list] = {}
        ev = self.events[0] if self.events else None
        for f in self.figures:
            if f.fid not in self.involved:
                continue
            rows = []
            for t in range(self.n):
                box = figure_box(f, t, self.scene.w, self.scene.h)
                if box is not None:
                    rows.append((t, box, not (ev.onset <= t <= ev.offset), "person"))
            out[f.fid] = rows
        for p in self.projectiles:
            rows = []
            for k in range(len(p.xs)):
                x, y = p.xs[k], p.ys[k]
                box = (max(0, int(x - p.r - 1)), max(0, int(y - p.r - 1)), min(self.scene.w - 1, math.ceil(x + p.r + 1)),
                       min(self.scene.h - 1, math.ceil(y + p.r + 1)))
                if box[0] < box[2] and box[1] < box[3]:
                    rows.append((p.t0 + k, box, False, "object"))
            out[p.pid] = rows
        return out

    def all_boxes(self, t: int) -> list[tuple[int, int, int, int]]:
        """Boxes of everything drawn at frame t (every figure and projectile)."""
        boxes = [b for f in self.figures if (b := figure_box(f, t, self.scene.w, self.scene.h)) is not None]
        for p in self.projectiles:
            if p.t0 <= t <= p.t1:
                k = t - p.t0
                boxes.append((int(p.xs[k] - p.r - 1), int(p.ys[k] - p.r - 1), int(p.xs[k] + p.r + 2),
                              int(p.ys[k] + p.r + 2)))
        return boxes


def simulate_video(params: SynthParams, index: int, category: str, name: str) -> SynthVideo:
    """The deterministic content of video ``index`` of a benchmark (depends on seed, index and category)."""
    kind_code = 0 if category == "Normal" else 1 + KINDS.index(category)
    rng = np.random.default_rng([params.seed, index, kind_code])
    n, fps = params.frames, params.fps
    scene = Scene(rng, params.width, params.height)
    background = _background(rng, scene)
    figs: list[Figure] = []
    fid = 0

    def new() -> Figure:
        nonlocal fid
        fid += 1
        return _new_figure(rng, n, fid)

    # normal walkers: a mix of slow, normal and fast-ish; often a pair passing close to each other
    lo, hi = params.walkers
    n_walkers = int(rng.integers(lo, hi + 1)) - (0 if category == "Normal" else 1)
    for _ in range(max(0, n_walkers)):
        f = new()
        speed = rng.uniform(1.9, 2.6) if rng.random() < 0.25 else rng.uniform(0.6, 1.7)
        _wander(f, scene, rng, 0, n, None, speed)
        figs.append(f)
    if rng.random() < 0.6:  # two walkers that cross each other (close, even overlapping) mid-video
        tc = int(rng.uniform(0.2, 0.8) * n)
        px, py = scene.interior(rng, 0.25)
        a, b = new(), new()
        _walk_to(a, scene, tc, (px, py), (1, rng.normal(0, 0.15)), rng.uniform(1.0, 2.2))
        _walk_line(a, scene, tc, n, (px, py), (1, rng.normal(0, 0.15)), rng.uniform(1.0, 2.2))
        _walk_to(b, scene, tc, (px, py + rng.normal(0, 4)), (-1, rng.normal(0, 0.15)), rng.uniform(1.0, 2.2))
        _walk_line(b, scene, tc, n, (px, py), (-1, rng.normal(0, 0.15)), rng.uniform(1.0, 2.2))
        figs += [a, b]

    projectiles: list[Projectile] = []
    events: list[Event] = []
    involved: set[int] = set()
    if category != "Normal":
        fn, k = _EVENTS[category]
        actors = [new() for _ in range(k)]
        if category == "Running" and rng.random() < 0.5:
            actors.append(new())  # a chaser
        t0 = int(rng.uniform(0.15, 0.45) * n)
        t1, inv, projectiles = fn(rng, scene, actors, n, fps, t0)
        figs += actors
        involved = {f.fid for f in inv}
        events.append(Event(category, t0, int(t1), sorted(involved) + [p.pid for p in projectiles]))
    for f in figs:
        _finish_walk_pose(f, scene)

    noise = []
    for _ in range(12):
        z = rng.normal(0, params.noise, (params.height, params.width, 1))
        z = np.repeat(z, 3, axis=2) + rng.normal(0, params.noise * 0.3, (params.height, params.width, 3))
        noise.append((np.clip(z, 0, 255).astype(np.uint8), np.clip(-z, 0, 255).astype(np.uint8)))
    noise_idx = rng.integers(0, len(noise), n)
    return SynthVideo(name, category, n, scene, background, figs, projectiles, events, noise, noise_idx, involved)


# ------------------------------------------------------------------------------------------- benchmark


def plan(params: SynthParams) -> list[dict]:
    """Which video is which: name, class, split, relative path. Deterministic for the seed."""
    params.check()
    rng = np.random.default_rng([params.seed, 999_983])
    n_anom = math.floor(params.videos * params.anomalous_fraction + 0.5)
    if 0 < params.anomalous_fraction < 1 and params.videos >= 2:
        n_anom = min(max(n_anom, 1), params.videos - 1)
    kinds = [params.kinds[i] for i in rng.permutation(len(params.kinds))]
    anom_classes = [kinds[i % len(kinds)] for i in range(n_anom)]
    groups = {"Normal": ["Normal"] * (params.videos - n_anom), "anomalous": anom_classes}
    counters: dict[str, int] = {}
    out = []
    for members in groups.values():
        m = len(members)
        n_test = math.floor(m * params.test_fraction + 0.5)
        if m >= 2 and params.test_fraction > 0:
            n_test = min(max(n_test, 1), m - 1)
        for i, cat in enumerate(members):
            counters[cat] = counters.get(cat, 0) + 1
            no = counters[cat]
            if cat == "Normal":
                name, rel = f"Normal_Videos_{no:03d}_x264", f"{NORMAL_DIR}/Normal_Videos_{no:03d}_x264.mp4"
            else:
                name, rel = f"{cat}{no:03d}_x264", f"{ANOMALY_DIR}/{cat}/{cat}{no:03d}_x264.mp4"
            out.append({"name": name, "class": cat, "split": "test" if i >= m - n_test else "train", "path": rel})
    for i, v in enumerate(out):
        v["index"] = i
    return out


def _clear_previous(out: Path) -> None:
    """Remove what a previous run wrote into ``out`` (only files its manifest names), or refuse."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"synth: {out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    manifest = out / "manifest.json"
    try:
        old = json.loads(manifest.read_text())
        assert old.get("generator", "").startswith("pvad.synth")
    except (OSError, ValueError, AssertionError):
        raise ConfigError(f"synth: {out} is not empty and holds no synth manifest.json; choose an empty folder") from None
    for v in old.get("videos", []):
        (out / v["path"]).unlink(missing_ok=True)
    for name in (TRAIN_LIST, TEMPORAL_FILE):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "vatic", ignore_errors=True)
    manifest.unlink()


def write_video(path: Path, video: SynthVideo, fps: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (video.scene.w, video.scene.h))
    if not w.isOpened():
        raise ConfigError(f"synth: OpenCV cannot write mp4v video {path}")
    try:
        for t in range(video.n):
            w.write(video.frame(t))
    finally:
        w.release()


def make_benchmark(out: Path, params: SynthParams | None = None) -> dict:
    """Write the benchmark into ``out``; returns a summary (counts, seconds)."""
    params = params or SynthParams()
    params.check()
    out = Path(out)
    start = time.perf_counter()
    _clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    videos = plan(params)
    train_lines, temporal_lines = [], []
    for v in videos:
        sv = simulate_video(params, v["index"], v["class"], v["name"])
        write_video(out / v["path"], sv, params.fps)
        v["frames"] = sv.n
        v["events"] = [e.as_dict() for e in sv.events]
        if v["split"] == "train":
            train_lines.append(v["path"].split("/", 1)[1] if v["class"] != "Normal" else v["path"])
        else:
            segs = [(e.onset + 1, e.offset + 1) for e in sv.events][:2]  # official file: 1-based, inclusive
            segs += [(-1, -1)] * (2 - len(segs))
            temporal_lines.append(f"{v['name']}.mp4  {v['class']}  {segs[0][0]}  {segs[0][1]}  "
                                  f"{segs[1][0]}  {segs[1][1]}  ")
        if v["class"] != "Normal":
            rows = []
            for tid, track in sv.tracks().items():
                for t, (x1, y1, x2, y2), lost, label in track:
                    rows.append(f'{tid} {x1} {y1} {x2} {y2} {t} {int(lost)} 0 0 "{label}"')
            (out / "vatic").mkdir(exist_ok=True)
            (out / "vatic" / f"{v['name']}.txt").write_text("\n".join(rows) + "\n")
    (out / TRAIN_LIST).write_text("\n".join(train_lines) + "\n")
    (out / TEMPORAL_FILE).write_text("\n".join(temporal_lines) + "\n")
    manifest = {
        "generator": GENERATOR,
        "seed": params.seed,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()},
        "frame_index": "0-based; onset/offset inclusive (the temporal file adds 1, as the official one is 1-based)",
        "videos": videos,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    seconds = time.perf_counter() - start
    n_anom = sum(v["class"] != "Normal" for v in videos)
    result = {"out": str(out), "videos": len(videos), "anomalous": n_anom, "normal": len(videos) - n_anom,
              "train": sum(v["split"] == "train" for v in videos), "test": sum(v["split"] == "test" for v in videos),
              "frames": sum(v["frames"] for v in videos), "seconds": round(seconds, 2)}
    logger.info("synth benchmark %s", result)
    return result
