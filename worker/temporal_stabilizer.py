"""Flow-guided temporal stabilizer: each output frame is blended with the previous stabilized frame,
warped along the motion of the input, where that motion is reliable.

The blind temporal-consistency filter of Bonneel et al. (2015), recursive form: with the backward flow b
of the low-res input (frame t -> t-1) and the previous result S_{t-1},

    S_t = O_t + blend * V(x) * (S_{t-1}(x + b(x)) - O_t)

V is 0 where the flow is unreliable: the forward-backward and motion-boundary mask of Lai et al. (2018)
(`evaluation.warping.estimate_flow`). Elsewhere it is their visibility exp(-alpha |I_t - I_{t-1}(x + b)|^2)
of the input frames, so a change of the input that the motion does not explain (lighting, transparency,
colours moving apart) keeps the model's own frame instead of ghosting the previous one in. The flow is
OpenCV Farneback on the input frames resized (bicubic) to about FLOW_PIXELS pixels, scaled to the output
grid. A scene cut (less than MIN_CONSISTENT of the frame has consistent flow) restarts the filter. It is
causal, so chunked and whole-clip runs give the same frames. No I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from evaluation.warping import FARNEBACK, estimate_flow

DEFAULT_TEMPORAL_BLEND = 0.4  # share of the warped previous frame; 0 turns the stabilizer off
FLOW_PIXELS = 480 * 270  # flow is estimated on input frames resized to about this many pixels
VISIBILITY_ALPHA = 50.0  # Lai et al. (2018): the input's warping error that still counts as visible
VISIBILITY_SIGMA = float(FARNEBACK["poly_sigma"])  # judge the input's change at the scale the flow resolves
MIN_CONSISTENT = 0.4  # below this share of consistent-flow pixels a frame starts a new shot


def check_blend(blend: float) -> float:
    if not 0.0 <= blend < 1.0:
        raise ValueError(f"temporal_blend must be in [0, 1), got {blend}")
    return blend


def flow_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the frames the flow is estimated on: about FLOW_PIXELS, the input's aspect."""
    factor = math.sqrt(FLOW_PIXELS / (height * width))
    return max(16, round(height * factor)), max(16, round(width * factor))


@dataclass(frozen=True, eq=False)
class Motion:
    """How the previous frame maps onto this one, on the flow's grid (rows, cols)."""

    shift_x: np.ndarray  # float32: the backward flow b, in flow-grid pixels
    shift_y: np.ndarray
    visibility: np.ndarray  # float32 in [0, 1]: V, 0 where the flow is unreliable


class MotionEstimator:
    """The input's motion, frame after frame: `estimate(lr)` for each input frame in order. Or, to
    estimate several frames at once on a thread pool, `estimate_motion(*pair(lr))` for each frame: the
    pairs are independent and cv2 releases the GIL."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None

    def pair(self, lr: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(previous input frame, `lr`): the frames `lr`'s motion is estimated from."""
        previous, self._previous = self._previous, lr
        return previous, lr

    def estimate(self, lr: np.ndarray) -> Motion | None:
        """Motion from the previous input frame to `lr`; None where `lr` starts a shot."""
        return estimate_motion(*self.pair(lr))


def estimate_motion(previous: np.ndarray | None, lr: np.ndarray) -> Motion | None:
    """How input frame `previous` maps onto input frame `lr` (H, W, 3 uint8); None where `lr` starts a
    shot (no previous frame, a new size, or too little consistent flow: a cut)."""
    if previous is None or previous.shape != lr.shape:
        return None
    small_previous, small = _flow_frame(previous), _flow_frame(lr)
    flow = estimate_flow(small_previous, small)
    if flow.valid.mean() < MIN_CONSISTENT:
        return None
    rows, cols = small.shape[:2]
    grid_x, grid_y = _grid(rows, cols)
    visibility = flow.valid * _visibility(small_previous, small, flow.map_x, flow.map_y)
    return Motion(flow.map_x - grid_x, flow.map_y - grid_y, visibility)


def _flow_frame(lr: np.ndarray) -> np.ndarray:
    """`lr` resized to the flow's grid (about FLOW_PIXELS pixels)."""
    height, width = lr.shape[:2]
    rows, cols = flow_size(height, width)
    interpolation = cv2.INTER_CUBIC if rows > height else cv2.INTER_AREA
    return cv2.resize(lr, (cols, rows), interpolation=interpolation)


class TemporalStabilizer:
    """Stabilizes one clip's output frames, in order; a new instance for the next clip.

    `stabilizer(lr, output)` does both steps; `apply(motion, output)` takes motion estimated
    ahead from `stabilizer.motion` (same order)."""

    def __init__(self, blend: float = DEFAULT_TEMPORAL_BLEND) -> None:
        self.blend = check_blend(blend)
        self.motion = MotionEstimator()
        self._previous: np.ndarray | None = None  # float32, the unrounded S_{t-1}
        self.restarts = 0  # frames that started a shot (the first included)

    def __call__(self, lr: np.ndarray, output: np.ndarray) -> np.ndarray:
        """The stabilized (H, W, 3) uint8 frame for input frame `lr` and its model output `output`."""
        if self.blend == 0.0:
            return output
        return self.apply(self.motion.estimate(lr), output)

    def apply(self, motion: Motion | None, output: np.ndarray) -> np.ndarray:
        """The stabilized frame for model output `output`, given its input's `motion`."""
        current = output.astype(np.float32)
        previous = self._previous
        self._previous = current
        if motion is None or previous is None or previous.shape != current.shape:
            self.restarts += 1
            return output
        rows, cols = output.shape[:2]
        grid_x, grid_y = _grid(rows, cols)
        scale_x, scale_y = cols / motion.shift_x.shape[1], rows / motion.shift_x.shape[0]
        map_x = cv2.scaleAdd(_resized(motion.shift_x, rows, cols), scale_x, grid_x)
        map_y = cv2.scaleAdd(_resized(motion.shift_y, rows, cols), scale_y, grid_y)
        warped = cv2.remap(previous, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        weight = cv2.resize(motion.visibility, (cols, rows), interpolation=cv2.INTER_LINEAR)
        weight = cv2.merge([weight * np.float32(self.blend)] * 3)
        result = cv2.add(current, cv2.multiply(weight, cv2.subtract(warped, current)))
        self._previous = result
        return cv2.convertScaleAbs(result)  # round half to even, saturate to uint8 (result >= 0)


def _visibility(
    previous: np.ndarray, current: np.ndarray, map_x: np.ndarray, map_y: np.ndarray
) -> np.ndarray:
    """Lai et al.'s visibility mask exp(-alpha |I_t - W(I_{t-1})|^2) on the input frames, RGB in [0, 1]:
    near 1 where the flow explains the input's change, near 0 where it does not (new content,
    lighting, transparency, colours moving apart), so such pixels keep the model's own frame."""
    warped = cv2.remap(previous, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    difference = (warped.astype(np.float32) - current.astype(np.float32)) / 255.0
    if VISIBILITY_SIGMA > 0:
        difference = cv2.GaussianBlur(difference, (0, 0), VISIBILITY_SIGMA)
    error = np.sum(difference**2, axis=2)
    return np.exp(-VISIBILITY_ALPHA * error).astype(np.float32)


@lru_cache(maxsize=8)
def _grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) pixel coordinates, float32 (rows, cols) each; read-only, shared between calls."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _resized(field: np.ndarray, rows: int, cols: int) -> np.ndarray:
    return cv2.resize(field, (cols, rows), interpolation=cv2.INTER_LINEAR)
