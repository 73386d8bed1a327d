"""Flow-guided temporal stabilizer: each output frame is blended with the previous stabilized frame,
warped along the motion of the input, where that motion is reliable.

The blind temporal-consistency filter of Bonneel et al. (2015), recursive form: with the backward flow b
of the low-res input (frame t -> t-1) and the previous result S_{t-1},

    S_t = (1 - blend) * O_t + blend * S_{t-1}(x + b(x))    where the flow is consistent,
    S_t = O_t                                              elsewhere (occlusions, motion boundaries).

The flow is OpenCV Farneback on the input frames resized (bicubic) to about FLOW_PIXELS pixels, with the
forward-backward and motion-boundary mask of Lai et al. (2018) (`evaluation.warping.estimate_flow`), then
scaled to the output grid. A scene cut (less than MIN_CONSISTENT of the frame has consistent flow)
restarts the filter. It is causal, so chunked and whole-clip runs give the same frames. No I/O.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from evaluation.warping import estimate_flow

DEFAULT_TEMPORAL_BLEND = 0.3  # share of the warped previous frame; 0 turns the stabilizer off
FLOW_PIXELS = 480 * 270  # flow is estimated on input frames resized to about this many pixels
MIN_CONSISTENT = 0.4  # below this share of consistent-flow pixels a frame starts a new shot


def check_blend(blend: float) -> float:
    if not 0.0 <= blend < 1.0:
        raise ValueError(f"temporal_blend must be in [0, 1), got {blend}")
    return blend


def flow_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the frames the flow is estimated on: about FLOW_PIXELS, the input's aspect."""
    factor = math.sqrt(FLOW_PIXELS / (height * width))
    return max(16, round(height * factor)), max(16, round(width * factor))


class TemporalStabilizer:
    """Stabilizes one clip's output frames, in order; `reset()` (or a new instance) for the next clip."""

    def __init__(self, blend: float = DEFAULT_TEMPORAL_BLEND) -> None:
        self.blend = check_blend(blend)
        self.reset()

    def reset(self) -> None:
        self._previous_input: np.ndarray | None = None  # flow-size RGB uint8
        self._previous_output: np.ndarray | None = None  # float32, the unrounded S_{t-1}
        self.restarts = 0  # frames that started a shot (the first included)

    def __call__(self, lr: np.ndarray, output: np.ndarray) -> np.ndarray:
        """The stabilized (H, W, 3) uint8 frame for input frame `lr` and its model output `output`."""
        if self.blend == 0.0:
            return output
        height, width = lr.shape[:2]
        rows, cols = flow_size(height, width)
        small = cv2.resize(
            lr, (cols, rows), interpolation=cv2.INTER_CUBIC if rows > height else cv2.INTER_AREA
        )
        current = output.astype(np.float32)
        previous, previous_input = self._previous_output, self._previous_input
        self._previous_input = small
        if previous is None or previous_input is None or previous.shape != current.shape:
            return self._restart(current)
        flow = estimate_flow(previous_input, small)
        if flow.valid.mean() < MIN_CONSISTENT:
            return self._restart(current)
        out_rows, out_cols = output.shape[:2]
        grid_x, grid_y = _grid(rows, cols)
        out_x, out_y = _grid(out_rows, out_cols)
        map_x = _resized(flow.map_x - grid_x, out_rows, out_cols) * np.float32(out_cols / cols) + out_x
        map_y = _resized(flow.map_y - grid_y, out_rows, out_cols) * np.float32(out_rows / rows) + out_y
        warped = cv2.remap(previous, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        weight = cv2.resize(
            flow.valid.astype(np.float32), (out_cols, out_rows), interpolation=cv2.INTER_NEAREST
        )
        weight *= np.float32(self.blend)  # blend where the flow is consistent, 0 elsewhere
        result = current + weight[..., None] * (warped - current)
        self._previous_output = result
        return np.clip(np.rint(result), 0, 255).astype(np.uint8)

    def _restart(self, current: np.ndarray) -> np.ndarray:
        self._previous_output = current
        self.restarts += 1
        return np.clip(np.rint(current), 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) pixel coordinates, float32 (rows, cols) each; read-only, shared between calls."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _resized(field: np.ndarray, rows: int, cols: int) -> np.ndarray:
    return cv2.resize(field.astype(np.float32), (cols, rows), interpolation=cv2.INTER_LINEAR)
