// The FastVSR console: sign in with an API key, upload videos, follow jobs, inspect results.
// Views: sign-in, home (#/: upload + job list), job (#/jobs/<id>: status, comparison, profile, stats).

import { Api } from "./api.js";
import { drawFrame, frameTime, loadVideo, profileFrames, seek, temporalProfile } from "./frames.js";
import { badge, bytes, h, macs, progressBar, rateOf, seconds, shortId, STATUS_LABELS, when } from "./ui.js";

const KEY_STORAGE = "vsr.apiKey";
const NAMES_STORAGE = "vsr.jobNames";
const LIST_POLL_MS = 2000;
const JOB_POLL_MS = 1000;
const ACTIVE = new Set(["queued", "processing"]);

const main = document.getElementById("main");
const summary = document.getElementById("service-summary");
const signOutButton = document.getElementById("sign-out");

const state = {
  api: null,
  service: null, // GET /v1/status
  uploads: new Map(), // job id -> the File uploaded from this tab (the comparison's "before")
  media: new Map(), // job id -> { result, resultBlob, input, inputError } (object URLs are revoked on sign-out)
  view: null, // the current view's { stop() }
  statusTimer: null,
};

// ---------------------------------------------------------------------------------------- helpers

function jobNames() {
  try {
    return JSON.parse(sessionStorage.getItem(NAMES_STORAGE) || "{}");
  } catch {
    return {};
  }
}

function rememberName(id, name) {
  const names = jobNames();
  names[id] = name;
  sessionStorage.setItem(NAMES_STORAGE, JSON.stringify(names));
}

function field(id, label, control, hint = null) {
  control.id = id;
  const parts = [h("label", { for: id }, label), control];
  if (hint) {
    control.setAttribute("aria-describedby", `${id}-hint`);
    parts.push(h(`p.hint#${id}-hint`, {}, hint));
  }
  return h("div.field", {}, ...parts);
}

function select(options, value) {
  return h("select", {}, ...options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
}

function handleAuth(error) {
  if (error && error.status === 401) {
    signOut("Your API key is no longer accepted. Sign in again.");
    return true;
  }
  return false;
}

function showView(factory) {
  if (state.view) state.view.stop();
  main.replaceChildren();
  state.view = factory(main);
  const title = main.querySelector("[data-view-title]");
  if (title) title.focus({ preventScroll: false });
}

async function refreshSummary() {
  if (!state.api) return;
  try {
    state.service = await state.api.status();
    const s = state.service;
    summary.textContent =
      `Model ${s.default_model} · ${s.workers} worker${s.workers === 1 ? "" : "s"} · ` +
      `${s.queue_depth} queued · ${s.storage} storage · uploads up to ${bytes(s.max_upload_bytes)}`;
  } catch (error) {
    if (!handleAuth(error)) summary.textContent = `Service status unavailable: ${error.message}`;
  }
}

function route() {
  if (!state.api) {
    showView(signInView);
    return;
  }
  const match = location.hash.match(/^#\/jobs\/([A-Za-z0-9_-]{1,128})$/);
  showView(match ? (root) => jobView(root, match[1]) : homeView);
}

function signedIn(api, service) {
  state.api = api;
  state.service = service;
  signOutButton.hidden = false;
  refreshSummary();
  clearInterval(state.statusTimer);
  state.statusTimer = setInterval(refreshSummary, 10000);
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY_STORAGE);
  clearInterval(state.statusTimer);
  for (const media of state.media.values()) {
    for (const url of [media.result, media.input]) if (url && url.startsWith("blob:")) URL.revokeObjectURL(url);
  }
  Object.assign(state, { api: null, service: null, uploads: new Map(), media: new Map() });
  summary.textContent = "";
  signOutButton.hidden = true;
  history.replaceState(null, "", "#/");
  showView((root) => signInView(root, message));
}

// ---------------------------------------------------------------------------------------- sign-in

function signInView(root, message = "") {
  const input = h("input", {
    type: "password",
    autocomplete: "current-password",
    required: true,
    spellcheck: "false",
    autocapitalize: "off",
  });
  const error = h("p.error#signin-error", { role: "alert" }, message);
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form.stack",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        button.disabled = true;
        error.textContent = "";
        const api = new Api(key);
        try {
          const service = await api.status();
          sessionStorage.setItem(KEY_STORAGE, key);
          signedIn(api, service);
          route();
        } catch (err) {
          error.textContent =
            err.status === 401 ? "This API key was not accepted." : `Could not sign in: ${err.message}`;
          button.disabled = false;
          input.focus();
        }
      },
    },
    field(
      "api-key",
      "API key",
      input,
      "Kept in this tab only (session storage) and sent only to this service. The embedded service saves one in vsr-data/api-key; vsr keys makes new ones.",
    ),
    button,
    error,
  );
  root.append(
    h(
      "section.card.narrow",
      { "aria-labelledby": "signin-title" },
      h("h2#signin-title", { tabindex: -1, "data-view-title": true }, "Sign in"),
      form,
    ),
  );
  return { stop() {} };
}

// ---------------------------------------------------------------------------------------- home

function homeView(root) {
  const upload = uploadSection();
  const jobs = jobsSection();
  root.append(
    h("h2.visually-hidden#home-title", { tabindex: -1, "data-view-title": true }, "Upload and jobs"),
    h("div.home", {}, upload.el, jobs.el),
  );
  return {
    stop() {
      upload.stop();
      jobs.stop();
    },
  };
}

function uploadSection() {
  let file = null;
  let active = null;
  let stopped = false;
  const fileInput = h("input#file-input.visually-hidden", {
    type: "file",
    accept: "video/*,.mp4,.mkv,.mov,.webm,.ts",
    "aria-describedby": "file-chosen",
  });
  const chosen = h("p.chosen#file-chosen", { "aria-live": "polite" }, "No file chosen.");
  const drop = h(
    "div.dropzone#dropzone",
    {},
    h("p", {}, "Drag and drop a video here, or"),
    fileInput,
    h("label.button.secondary#file-label", { for: "file-input" }, "Choose a video…"),
    chosen,
  );
  const codec = select([["h264", "H.264"], ["h265", "H.265 (HEVC)"]], "h264");
  const container = select([["mp4", "MP4"], ["mkv", "Matroska (MKV)"]], "mp4");
  const presets = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"];
  const preset = select(presets.map((p) => [p, p]), "medium");
  const crf = h("input", { type: "number", min: 0, max: 51, step: 1, value: "18", inputmode: "numeric" });
  const submit = h("button#upload-button", { type: "submit", disabled: true }, "Upload and upscale ×4");
  const bar = h("progress#upload-progress", { max: 100, value: 0 });
  const barText = h("span#upload-progress-text", {}, "");
  const cancel = h("button.secondary", { type: "button", onclick: () => active && active.abort() }, "Cancel upload");
  const progressBox = h(
    "div.upload-progress#upload-progress-box",
    { hidden: true },
    h("label", { for: "upload-progress" }, "Upload progress"),
    bar,
    barText,
    cancel,
  );
  const error = h("p.error#upload-error", { role: "alert" });

  function choose(picked) {
    file = picked || null;
    chosen.textContent = file ? `${file.name} (${bytes(file.size)})` : "No file chosen.";
    submit.disabled = !file;
    error.textContent = "";
  }

  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    if (event.dataTransfer.files.length) choose(event.dataTransfer.files[0]);
  });

  const form = h(
    "form.stack",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        if (!file || active) return;
        const quality = Number(crf.value);
        if (!Number.isInteger(quality) || quality < 0 || quality > 51) {
          error.textContent = "Quality (CRF) must be a whole number from 0 to 51.";
          crf.focus();
          return;
        }
        if (state.service && file.size > state.service.max_upload_bytes) {
          error.textContent = `This file is larger than the service accepts (${bytes(state.service.max_upload_bytes)}).`;
          return;
        }
        const params = { codec: codec.value, crf: quality, container: container.value, preset: preset.value };
        const uploading = file;
        error.textContent = "";
        submit.disabled = true;
        progressBox.hidden = false;
        const onProgress = (done, total) => {
          bar.value = total ? Math.round((done / total) * 100) : 0;
          barText.textContent = `${bytes(done)} of ${bytes(total)} (${bar.value}%)`;
        };
        onProgress(0, uploading.size);
        active = state.api.upload(uploading, params, onProgress);
        try {
          const job = await active.promise;
          rememberName(job.id, uploading.name);
          state.uploads.set(job.id, uploading);
          if (!stopped) location.hash = `#/jobs/${job.id}`;
        } catch (err) {
          if (handleAuth(err) || stopped) return;
          const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : "";
          error.textContent = `Upload failed: ${err.message}${wait}`;
          submit.disabled = !file;
          progressBox.hidden = true;
        } finally {
          active = null;
        }
      },
    },
    drop,
    h(
      "fieldset.options",
      {},
      h("legend", {}, "Output"),
      field("codec", "Codec", codec),
      field("container", "Container", container),
      field("crf", "Quality (CRF)", crf, "0–51: lower means better quality and larger files."),
      field("preset", "Encoder preset", preset, "Slower presets compress better."),
    ),
    submit,
    progressBox,
    error,
  );
  const el = h(
    "section.card.upload",
    { "aria-labelledby": "upload-title" },
    h("h2#upload-title", {}, "Upscale a video"),
    form,
  );
  return { el, stop: () => (stopped = true) };
}

function jobsSection() {
  let timer = null;
  let stopped = false;
  let limit = 20;
  const filter = select(
    [["", "All jobs"], ...Object.entries(STATUS_LABELS).map(([value, label]) => [value, label])],
    "",
  );
  const tbody = h("tbody");
  const table = h(
    "table.jobs#jobs-table",
    {},
    h("caption.visually-hidden", {}, "Your jobs, newest first"),
    h(
      "thead",
      {},
      h("tr", {}, ...["Job", "Status", "Progress", "Submitted"].map((t) => h("th", { scope: "col" }, t))),
    ),
    tbody,
  );
  const empty = h("p.empty", { hidden: true }, "No jobs here yet. Upload a video to start one.");
  const more = h(
    "button.secondary",
    {
      type: "button",
      hidden: true,
      onclick: () => {
        limit = Math.min(100, limit + 20);
        refresh();
      },
    },
    "Show more",
  );
  const note = h("p.hint#jobs-status", { role: "status" }, "");
  filter.addEventListener("change", () => refresh());

  function row(job, names) {
    const name = names[job.id];
    const link = h(
      "a.job-link",
      { href: `#/jobs/${job.id}`, dataset: { jobId: job.id } },
      h("code", {}, shortId(job.id)),
      name ? h("span.job-name", {}, name) : null,
    );
    link.setAttribute("aria-label", `Job ${job.id}${name ? `, ${name}` : ""}`);
    return h(
      "tr",
      { dataset: { jobId: job.id, status: job.status } },
      h("td", {}, link),
      h("td", {}, badge(job.status)),
      h("td", {}, progressBar(job, `Progress of job ${shortId(job.id)}`)),
      h("td", {}, when(job.created_at)),
    );
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const page = await state.api.listJobs({ status: filter.value, limit });
      if (stopped) return;
      const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.jobId : null;
      const names = jobNames();
      tbody.replaceChildren(...page.jobs.map((job) => row(job, names)));
      if (focused) {
        const again = tbody.querySelector(`a[data-job-id="${CSS.escape(focused)}"]`);
        if (again) again.focus();
      }
      empty.hidden = page.jobs.length > 0;
      table.hidden = page.jobs.length === 0;
      more.hidden = !page.next_cursor || limit >= 100;
      note.textContent = page.next_cursor && limit >= 100 ? "Showing the newest 100 jobs (`vsr list` shows all)." : "";
    } catch (err) {
      if (handleAuth(err) || stopped) return;
      note.textContent = `Could not refresh the list: ${err.message}`;
    }
    if (!stopped) timer = setTimeout(refresh, LIST_POLL_MS);
  }
  refresh();

  const el = h(
    "section.card.jobs-card",
    { "aria-labelledby": "jobs-title" },
    h("div.card-head", {}, h("h2#jobs-title", {}, "Jobs"), field("status-filter", "Show", filter)),
    table,
    empty,
    more,
    note,
  );
  return {
    el,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

// ---------------------------------------------------------------------------------------- job

const STAGES = [
  ["queue_wait", "Waiting in the queue"],
  ["download", "Input download"],
  ["decode", "Video decode"],
  ["model_encode", "VAE encoder"],
  ["denoise", "Denoiser (one step)"],
  ["model_decode", "VAE decoder (f16)"],
  ["video_encode", "Video encode"],
  ["upload", "Result upload"],
];
const MODEL_STAGES = ["model_encode", "denoise", "model_decode"];

function jobView(root, id) {
  let stopped = false;
  let timer = null;
  let shownStatus = null;
  let resultShown = null;
  let actionsKey = null;
  const title = h("h2#job-title", { tabindex: -1, "data-view-title": true }, "Job ", h("code", {}, id));
  const statusLine = h("p.status-line#job-status", { role: "status" });
  const progressHolder = h("div.job-progress");
  const errorBox = h("div.error-box#job-error", { role: "alert", hidden: true });
  const facts = h("dl.facts");
  const actions = h("div.actions");
  const results = h("div.results");
  root.append(
    h("p", {}, h("a.back", { href: "#/" }, "← All jobs")),
    h(
      "section.card.job-card",
      { "aria-labelledby": "job-title" },
      title,
      statusLine,
      progressHolder,
      errorBox,
      facts,
      actions,
    ),
    results,
  );

  function fact(term, value) {
    return [h("dt", {}, term), h("dd", {}, value)];
  }

  function render(job) {
    if (job.status !== shownStatus) {
      shownStatus = job.status;
      statusLine.replaceChildren(badge(job.status), " ", statusSentence(job));
    }
    progressHolder.replaceChildren(progressBar(job, "Job progress"));
    const name = jobNames()[job.id];
    const p = job.params;
    const rate = rateOf(job);
    facts.replaceChildren(
      ...(name ? fact("File", name) : []),
      ...fact("Submitted", when(job.created_at)),
      ...fact("Started", when(job.started_at)),
      ...fact("Finished", when(job.finished_at)),
      ...(rate ? fact("Speed", rate) : []),
      ...fact("Encoding", `${p.codec}, CRF ${p.crf}, ${p.preset}, ${p.container}`),
      ...fact("Model", `${p.model} (×${p.scale})`),
      ...(job.output
        ? fact(
            "Output",
            `${job.output.width}×${job.output.height}, ${job.output.frames} frames at ${job.output.fps} fps, ` +
              bytes(job.output.bytes),
          )
        : []),
      ...(job.attempts > 1 ? fact("Attempts", String(job.attempts)) : []),
    );
    if (job.error) {
      errorBox.hidden = false;
      errorBox.replaceChildren(h("strong", {}, job.error.code), `: ${job.error.message}`);
    } else {
      errorBox.hidden = true;
    }
    renderActions(job);
    if (job.status === "succeeded" && resultShown !== job.id) {
      resultShown = job.id;
      showResult(job, results, () => stopped);
    }
  }

  function renderActions(job) {
    const key = `${job.status}/${job.cancel_requested}`;
    if (key === actionsKey) return; // keep focus on the buttons while polling
    actionsKey = key;
    const buttons = [];
    if (ACTIVE.has(job.status)) {
      const cancel = h("button.danger#cancel-button", { type: "button" }, job.cancel_requested ? "Cancel requested…" : "Cancel job");
      cancel.disabled = job.cancel_requested;
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        try {
          render(await state.api.cancelJob(job.id));
        } catch (err) {
          if (handleAuth(err)) return;
          statusLine.textContent = `Could not cancel: ${err.message}`;
          cancel.disabled = false;
        }
      });
      buttons.push(cancel);
    }
    if (job.status === "succeeded" && job.output && job.output.url) buttons.push(downloadButton(job));
    actions.replaceChildren(...buttons);
  }

  async function poll() {
    try {
      const job = await state.api.getJob(id);
      if (stopped) return;
      render(job);
      if (!ACTIVE.has(job.status)) return;
    } catch (err) {
      if (handleAuth(err) || stopped) return;
      if (err.status === 404) {
        statusLine.textContent = "There is no such job (or it belongs to another API key).";
        return;
      }
      statusLine.textContent = `Could not refresh: ${err.message}`;
    }
    timer = setTimeout(poll, JOB_POLL_MS);
  }
  poll();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

function statusSentence(job) {
  switch (job.status) {
    case "queued":
      return "Waiting for a worker.";
    case "processing":
      return job.cancel_requested ? "Stopping at the next chunk." : "Upscaling…";
    case "succeeded":
      return "Done.";
    case "failed":
      return "The job failed.";
    default:
      return "The job was canceled.";
  }
}

function resultName(job) {
  return `${job.id}_x${job.params.scale}.${job.params.container}`;
}

function downloadButton(job) {
  if (state.service && state.service.storage !== "local") {
    // a presigned storage URL: the browser downloads it directly, without the API key
    return h("a.button#download-button", { href: job.output.url, download: resultName(job) }, `Download result (${bytes(job.output.bytes)})`);
  }
  const label = `Download result (${bytes(job.output.bytes)})`;
  const button = h("button#download-button", { type: "button" }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const media = state.media.get(job.id) || {};
      const blob =
        media.resultBlob ||
        (await state.api.fetchBlob(`v1/jobs/${job.id}/result`, (done, total) => {
          button.textContent = total ? `Downloading… ${Math.round((done / total) * 100)}%` : `Downloading… ${bytes(done)}`;
        }));
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: resultName(job), hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      button.textContent = label;
    } catch (err) {
      if (!handleAuth(err)) button.textContent = `Download failed: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

// Object URLs (local storage: fetched with the API key) or presigned URLs (S3) of the result and input.
async function mediaFor(job) {
  const media = state.media.get(job.id) || {};
  state.media.set(job.id, media);
  const local = !state.service || state.service.storage === "local";
  if (!media.result) {
    if (local) {
      media.resultBlob = await state.api.fetchBlob(`v1/jobs/${job.id}/result`);
      media.result = URL.createObjectURL(media.resultBlob);
    } else {
      media.result = job.output.url;
    }
  }
  if (media.input === undefined) {
    const file = state.uploads.get(job.id);
    try {
      if (file) media.input = URL.createObjectURL(file);
      else if (local) media.input = URL.createObjectURL(await state.api.fetchBlob(`v1/jobs/${job.id}/input`));
      else media.input = (await state.api.inputLink(job.id)).url;
      media.inputSource = file ? "the file uploaded from this tab" : "the stored input";
    } catch (err) {
      media.input = null;
      media.inputError = err.message;
    }
  }
  return media;
}

function showResult(job, container, isStopped) {
  const visuals = h("div.visuals");
  const stats = h("div.stats", {}, timingsSection(job), macsSection(job));
  const loading = h("p.hint#media-status", { role: "status" }, "Loading the videos for the comparison…");
  visuals.append(loading);
  container.replaceChildren(h("div.result-grid", {}, visuals, stats));
  mediaFor(job)
    .then(async (media) => {
      if (isStopped()) return;
      const [after, profileVideo, before] = await Promise.all([
        loadVideo(media.result),
        loadVideo(media.result),
        media.input ? loadVideo(media.input).catch(() => null) : Promise.resolve(null),
      ]);
      if (isStopped()) return;
      const compare = compareSection(job, media, before, after);
      const profile = profileSection(job, profileVideo, compare, isStopped);
      loading.remove();
      visuals.append(compare.el, profile.el);
    })
    .catch((err) => {
      if (!handleAuth(err)) loading.textContent = `The result cannot be shown here: ${err.message}`;
    });
}

function compareSection(job, media, beforeVideo, afterVideo) {
  const { width, height, frames, fps } = job.output;
  const hasBefore = beforeVideo !== null;
  const before = h("canvas#before-canvas", { width, height, role: "img" });
  const after = h("canvas#after-canvas.after", { width, height, role: "img" });
  const divider = h("div.divider", { "aria-hidden": "true" });
  const rowMarker = h("div.row-marker", { "aria-hidden": "true" });
  const stage = h(
    "div.compare#compare",
    { style: { aspectRatio: `${width} / ${height}` }, dataset: { ready: "false" } },
    hasBefore ? before : null,
    after,
    hasBefore ? divider : null,
    rowMarker,
    hasBefore ? h("span.tag.tag-before", { "aria-hidden": "true" }, "Before") : null,
    h("span.tag.tag-after", { "aria-hidden": "true" }, "After"),
  );
  if (width < 720) stage.classList.add("pixelated");
  const position = h("input", { type: "range", min: 0, max: 100, step: 1, value: "50" });
  const frame = h("input", { type: "range", min: 1, max: frames, step: 1, value: String(Math.ceil(frames / 2)) });
  const frameText = h("output#compare-frame-value", { for: "compare-frame" });
  const scaling = select(
    [["nearest", "Nearest neighbour (the input's own pixels)"], ["smooth", "Smooth (the browser's bilinear)"]],
    "nearest",
  );
  let token = 0;

  function setPosition(percent) {
    const p = Math.max(0, Math.min(100, Math.round(percent)));
    stage.style.setProperty("--pos", `${p}%`);
    position.value = String(p);
    position.setAttribute("aria-valuetext", `${p}% input, ${100 - p}% result`);
    stage.dataset.position = String(p);
  }

  async function showFrame() {
    const index = Number(frame.value) - 1;
    const mine = (token += 1);
    const t = frameTime(afterVideo, index, fps);
    await Promise.all([seek(afterVideo, t), hasBefore ? seek(beforeVideo, t) : null]);
    if (mine !== token) return;
    drawFrame(after, afterVideo, true);
    if (hasBefore) drawFrame(before, beforeVideo, scaling.value === "smooth");
    frameText.textContent = `${index + 1} of ${frames}`;
    frame.setAttribute("aria-valuetext", `frame ${index + 1} of ${frames}`);
    after.setAttribute("aria-label", `Result frame ${index + 1}, ${width}×${height}`);
    before.setAttribute(
      "aria-label",
      `Input frame ${index + 1}, enlarged ×4 (${scaling.value === "smooth" ? "smooth" : "nearest neighbour"})`,
    );
    stage.dataset.frame = String(index + 1);
    stage.dataset.ready = "true";
  }

  stage.addEventListener("pointerdown", (event) => {
    if (!hasBefore) return;
    stage.setPointerCapture(event.pointerId);
    const rect = stage.getBoundingClientRect();
    setPosition(((event.clientX - rect.left) / rect.width) * 100);
  });
  stage.addEventListener("pointermove", (event) => {
    if (!stage.hasPointerCapture(event.pointerId)) return;
    const rect = stage.getBoundingClientRect();
    setPosition(((event.clientX - rect.left) / rect.width) * 100);
  });
  position.addEventListener("input", () => setPosition(Number(position.value)));
  frame.addEventListener("input", showFrame);
  scaling.addEventListener("change", showFrame);
  setPosition(50);
  showFrame();

  const source = hasBefore
    ? `Left of the divider: the input (${media.inputSource}), enlarged ×4; right: the model's output.`
    : `The input is not available for a comparison (${media.inputError || "the browser cannot decode it"}); showing the result only.`;
  const el = h(
    "section.card#compare-section",
    { "aria-labelledby": "compare-title" },
    h("h3#compare-title", {}, "Before / after"),
    h("figure", {}, stage, h("figcaption.hint", {}, source)),
    h(
      "div.controls",
      {},
      hasBefore ? field("compare-position", "Divider (drag the picture or use the arrow keys)", position) : null,
      field("compare-frame", "Frame", frame),
      frameText,
      hasBefore ? field("compare-scaling", "Input enlarged with", scaling) : null,
    ),
  );
  return {
    el,
    markRow(row) {
      rowMarker.style.top = `${((row + 0.5) / height) * 100}%`;
    },
  };
}

function profileSection(job, video, compare, isStopped) {
  const { height, frames, fps } = job.output;
  const indices = profileFrames(frames);
  const canvas = h("canvas#profile-canvas", { role: "img", dataset: { ready: "false" } });
  const row = h("input", { type: "range", min: 0, max: height - 1, step: 1, value: String(Math.floor(height / 2)) });
  const rowText = h("output#profile-row-value", { for: "profile-row" });
  const status = h("p.hint#profile-status", { role: "status" });
  let token = 0;
  let debounce = null;

  async function compute() {
    const mine = (token += 1);
    const y = Number(row.value);
    rowText.textContent = `row ${y} of ${height}`;
    compare.markRow(y);
    canvas.dataset.ready = "false";
    const sampled = indices.length < frames ? ` (${indices.length} of ${frames} frames, evenly spread)` : "";
    try {
      const done = await temporalProfile(video, canvas, {
        indices,
        fps,
        row: y,
        isStale: () => mine !== token || isStopped(),
        onProgress: (k, n) => {
          if (k === n || k % 24 === 0) status.textContent = `Reading frames… ${k} of ${n}`;
        },
      });
      if (!done) return;
    } catch (err) {
      status.textContent = `The profile could not be computed: ${err.message}`;
      return;
    }
    // each frame gets at least 6 px of height on screen, the whole image at most 360 px
    canvas.style.height = `${Math.min(360, Math.max(indices.length * 6, 48))}px`;
    canvas.setAttribute("aria-label", `Temporal profile of row ${y}: ${indices.length} frames stacked top to bottom`);
    canvas.dataset.ready = "true";
    canvas.dataset.row = String(y);
    status.textContent = `Row ${y} of every frame${sampled}, first frame at the top.`;
  }

  row.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(compute, 250);
  });
  compute();
  const el = h(
    "section.card#profile-section",
    { "aria-labelledby": "profile-title" },
    h("h3#profile-title", {}, "Temporal profile"),
    h(
      "p.hint",
      {},
      "One row of the result taken from every frame and stacked: smooth streaks mean stable video, " +
        "jagged ones flicker. The dashed line on the comparison marks the row.",
    ),
    h("figure", {}, canvas, status),
    h("div.controls", {}, field("profile-row", "Row", row), rowText),
  );
  return { el };
}

function table(caption, headers, rows, foot) {
  return h(
    "table.stats-table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, ...headers.map((t, i) => h("th", { scope: "col", class: i ? "num" : null }, t)))),
    h("tbody", {}, ...rows),
    foot ? h("tfoot", {}, foot) : null,
  );
}

function shareCell(value, total) {
  const share = total > 0 ? value / total : 0;
  const bar = h("span.bar", { "aria-hidden": "true" });
  bar.style.width = `${Math.round(share * 100)}%`;
  return h("td.num.share", {}, h("span.bar-track", { "aria-hidden": "true" }, bar), `${(share * 100).toFixed(1)}%`);
}

function timingsSection(job) {
  const known = new Map(STAGES);
  const names = [...STAGES.map(([k]) => k), ...Object.keys(job.timings).filter((k) => !known.has(k))];
  const present = names.filter((k) => k in job.timings);
  const total = present.reduce((sum, k) => sum + job.timings[k], 0);
  const rows = present.map((k) =>
    h("tr", { dataset: { stage: k } }, h("th", { scope: "row" }, known.get(k) || k), h("td.num", {}, seconds(job.timings[k])), shareCell(job.timings[k], total)),
  );
  const foot = h("tr", {}, h("th", { scope: "row" }, "Total"), h("td.num", {}, seconds(total)), h("td"));
  const frames = job.output ? job.output.frames : job.progress.frames_done;
  const model = MODEL_STAGES.reduce((sum, k) => sum + (job.timings[k] || 0), 0);
  const perFrame = frames ? h("p.hint", {}, `Model time per frame: ${seconds(model / frames)} (encoder + denoiser + decoder).`) : null;
  return h(
    "section.card#timings-section",
    { "aria-labelledby": "timings-title" },
    h("h3#timings-title", {}, "Per-stage timings"),
    table("Seconds spent in each stage of the job", ["Stage", "Time", "Share"], rows, foot),
    perFrame,
  );
}

function macsSection(job) {
  const parts = Object.keys(job.macs).filter((k) => k !== "total");
  const total = job.macs.total ?? parts.reduce((sum, k) => sum + job.macs[k], 0);
  const frames = job.output ? job.output.frames : 0;
  const label = { encoder: "VAE encoder", denoiser: "Denoiser", decoder: "VAE decoder (f16)" };
  const rows = parts.map((k) =>
    h(
      "tr",
      { dataset: { component: k } },
      h("th", { scope: "row" }, label[k] || k),
      h("td.num", {}, macs(job.macs[k])),
      h("td.num", {}, frames ? macs(job.macs[k] / frames) : "–"),
      shareCell(job.macs[k], total),
    ),
  );
  const foot = h(
    "tr",
    {},
    h("th", { scope: "row" }, "Total"),
    h("td.num", {}, macs(total)),
    h("td.num", {}, frames ? macs(total / frames) : "–"),
    h("td"),
  );
  return h(
    "section.card#macs-section",
    { "aria-labelledby": "macs-title" },
    h("h3#macs-title", {}, "Compute (multiply-accumulates)"),
    parts.length
      ? table("MACs per model component", ["Component", "MACs", "Per frame", "Share"], rows, foot)
      : h("p", {}, "No MAC count was recorded."),
  );
}

// ---------------------------------------------------------------------------------------- start

signOutButton.addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);

async function start() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) {
    const api = new Api(key);
    try {
      signedIn(api, await api.status());
    } catch (err) {
      if (err.status === 401) {
        signOut("Your saved API key is no longer accepted. Sign in again.");
        return;
      }
      signedIn(api, null); // the service is down: keep the key, the views show the errors
    }
  }
  route();
}

start();
