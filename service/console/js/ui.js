// DOM building (text only: nothing from the service is ever parsed as HTML) and number formatting.

// h("p.note#id", { attrs }, ...children): children are nodes or strings (as text); `on*` attributes
// are listeners, `dataset` and `style` objects are assigned.
export function h(spec, attrs = {}, ...children) {
  const [tag, ...rest] = spec.split(/(?=[.#])/);
  const el = document.createElement(tag || "div");
  for (const part of rest) {
    if (part.startsWith(".")) el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style") Object.assign(el.style, value); // CSSOM: allowed by the page's CSP
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export function bytes(n) {
  if (n == null) return "?";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

export function seconds(s) {
  if (s == null) return "–";
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`;
  if (s < 120) return `${s.toFixed(2)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export function macs(n) {
  if (n == null) return "–";
  if (n >= 1e12) return `${(n / 1e12).toFixed(3)} T`;
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  return `${(n / 1e6).toFixed(1)} M`;
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function shortId(id) {
  return id.length > 12 ? `${id.slice(0, 8)}…` : id;
}

export const STATUS_LABELS = {
  queued: "Queued",
  processing: "Processing",
  succeeded: "Succeeded",
  failed: "Failed",
  canceled: "Canceled",
};

export function badge(status) {
  return h(`span.badge.badge-${status}`, {}, STATUS_LABELS[status] || status);
}

export function progressOf(job) {
  const { frames_done: done, frames_total: total } = job.progress;
  if (job.status === "succeeded") return { value: 1, text: `${done}/${total ?? done} frames` };
  if (!total) return { value: null, text: job.status === "queued" ? "waiting" : `${done} frames` };
  return { value: done / total, text: `${done}/${total} frames` };
}

// Speed and time left ("" before the first frame); the ETA only while the job runs.
export function rateOf(job) {
  const { fps, eta_s: eta } = job.progress;
  if (fps == null) return "";
  const rate = `${fps.toFixed(fps < 10 ? 2 : 1)} frames/s`;
  if (job.status === "succeeded") return `${rate} (average)`;
  return job.status === "processing" && eta != null ? `${rate}, about ${duration(eta)} left` : rate;
}

export function duration(s) {
  const t = Math.ceil(s);
  if (t < 60) return `${t} s`;
  if (t < 3600) return `${Math.floor(t / 60)} min ${t % 60} s`;
  return `${Math.floor(t / 3600)} h ${Math.floor((t % 3600) / 60)} min`;
}

// A <progress> with a text equivalent; value null = indeterminate.
export function progressBar(job, label) {
  const { value, text } = progressOf(job);
  const bar = h("progress", { max: 100, "aria-label": label });
  if (value !== null) bar.value = Math.round(value * 100);
  return h("span.progress", {}, bar, h("span.progress-text", {}, text));
}
