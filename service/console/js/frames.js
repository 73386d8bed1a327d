// Frames from <video> elements: load, seek to frame i, draw. Used by the before/after comparison
// and the temporal profile. Drawing only (no pixel read-back), so presigned cross-origin videos work.

export function loadVideo(src) {
  return new Promise((resolve, reject) => {
    const video = document.createElement("video");
    video.muted = true;
    video.playsInline = true;
    video.preload = "auto";
    const done = () => {
      video.removeEventListener("loadeddata", done);
      video.removeEventListener("error", failed);
      resolve(video);
    };
    const failed = () => {
      video.removeEventListener("loadeddata", done);
      video.removeEventListener("error", failed);
      reject(new Error("the browser could not decode this video"));
    };
    video.addEventListener("loadeddata", done);
    video.addEventListener("error", failed);
    video.src = src;
  });
}

// The middle of frame i at `fps`, kept inside the video.
export function frameTime(video, index, fps) {
  const t = (index + 0.5) / fps;
  return Number.isFinite(video.duration) ? Math.min(t, Math.max(0, video.duration - 0.5 / fps)) : t;
}

// Seek and wait until the new frame is presented: "seeked" alone can leave a stale frame for drawing
// (Chromium, videos outside the DOM), so also wait for requestVideoFrameCallback where it exists
// (at most 250 ms: seeking within the frame on screen presents nothing new).
export function seek(video, time) {
  return new Promise((resolve, reject) => {
    if (Math.abs(video.currentTime - time) < 1e-4 && video.readyState >= 2 && !video.seeking) {
      resolve();
      return;
    }
    const watchFrames = "requestVideoFrameCallback" in video;
    let seeked = false;
    let presented = !watchFrames;
    let timer = null;
    let handle = null;
    const cleanup = () => {
      video.removeEventListener("seeked", onSeeked);
      video.removeEventListener("error", onError);
      clearTimeout(timer);
      if (handle !== null) video.cancelVideoFrameCallback(handle);
    };
    const check = () => {
      if (seeked && presented) {
        cleanup();
        resolve();
      }
    };
    const onSeeked = () => {
      seeked = true;
      if (!presented) {
        timer = setTimeout(() => {
          presented = true;
          check();
        }, 250);
      }
      check();
    };
    const onError = () => {
      cleanup();
      reject(new Error("seeking failed"));
    };
    if (watchFrames) {
      handle = video.requestVideoFrameCallback(() => {
        handle = null;
        presented = true;
        check();
      });
    }
    video.addEventListener("seeked", onSeeked);
    video.addEventListener("error", onError);
    video.currentTime = time;
  });
}

// Draw `video`'s current frame over the whole canvas; smooth=false keeps pixels square (nearest).
export function drawFrame(canvas, video, smooth) {
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = smooth;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
}

// Which frames the profile samples: all of them, or `max` evenly spread ones for long videos.
export function profileFrames(frames, max = 720) {
  const count = Math.min(frames, max);
  return Array.from({ length: count }, (_, k) => Math.floor((k * frames) / count));
}

// The temporal profile: row `row` of each frame in `indices`, stacked top (first) to bottom (last).
// Returns false if `isStale()` turned true meanwhile (another row was picked, the page changed).
export async function temporalProfile(video, canvas, { indices, fps, row, onProgress, isStale }) {
  const width = video.videoWidth;
  canvas.width = width;
  canvas.height = indices.length;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  for (const [k, index] of indices.entries()) {
    if (isStale()) return false;
    await seek(video, frameTime(video, index, fps));
    ctx.drawImage(video, 0, row, width, 1, 0, k, width, 1);
    onProgress(k + 1, indices.length);
  }
  return true;
}
