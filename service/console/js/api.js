// The job service's API from the browser: fetch for JSON, XMLHttpRequest for uploads (progress events).

const ROOT = new URL(".", document.baseURI); // the console is served at the API's root

export function apiUrl(path) {
  return new URL(path, ROOT).toString();
}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function errorFrom(status, text, retryAfter) {
  let code = `http_${status}`;
  let message = `The service answered ${status}.`;
  try {
    const body = JSON.parse(text);
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // not JSON: keep the generic message
  }
  const seconds = retryAfter != null && retryAfter !== "" ? Number(retryAfter) : null;
  return new ApiError(status, code, message, Number.isFinite(seconds) ? seconds : null);
}

const networkError = () => new ApiError(0, "network_error", "The service could not be reached.");

export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "console-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Api {
  constructor(key) {
    this.key = key;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.key}`, Accept: "application/json", ...extra };
  }

  async request(method, path, body = undefined) {
    let response;
    try {
      response = await fetch(apiUrl(path), {
        method,
        headers: this.headers(body === undefined ? {} : { "Content-Type": "application/json" }),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch {
      throw networkError();
    }
    if (!response.ok) {
      throw errorFrom(response.status, await response.text(), response.headers.get("Retry-After"));
    }
    return response.status === 204 ? null : response.json();
  }

  status() {
    return this.request("GET", "v1/status");
  }

  listJobs({ status = "", cursor = null, limit = 20 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (status) query.set("status", status);
    if (cursor) query.set("cursor", cursor);
    return this.request("GET", `v1/jobs?${query}`);
  }

  getJob(id) {
    return this.request("GET", `v1/jobs/${encodeURIComponent(id)}`);
  }

  cancelJob(id) {
    return this.request("POST", `v1/jobs/${encodeURIComponent(id)}/cancel`);
  }

  inputLink(id) {
    return this.request("GET", `v1/jobs/${encodeURIComponent(id)}/input?redirect=false`);
  }

  // GET an authenticated file (the result or input route) as a Blob; onProgress(done, total|null).
  async fetchBlob(path, onProgress = () => {}) {
    let response;
    try {
      response = await fetch(apiUrl(path), { headers: this.headers({ Accept: "*/*" }), cache: "no-store" });
    } catch {
      throw networkError();
    }
    if (!response.ok) {
      throw errorFrom(response.status, await response.text(), response.headers.get("Retry-After"));
    }
    const total = Number(response.headers.get("Content-Length")) || null;
    const type = response.headers.get("Content-Type") || "application/octet-stream";
    if (!response.body) return response.blob();
    const reader = response.body.getReader();
    const chunks = [];
    let done = 0;
    onProgress(0, total);
    for (;;) {
      const { done: finished, value } = await reader.read();
      if (finished) break;
      chunks.push(value);
      done += value.byteLength;
      onProgress(done, total);
    }
    return new Blob(chunks, { type });
  }

  // POST a multipart upload with progress; returns { promise, abort }. onProgress(sentBytes, fileBytes).
  upload(file, params, onProgress = () => {}) {
    const xhr = new XMLHttpRequest();
    const promise = new Promise((resolve, reject) => {
      xhr.open("POST", apiUrl("v1/jobs"));
      for (const [name, value] of Object.entries(this.headers({ "Idempotency-Key": newIdempotencyKey() }))) {
        xhr.setRequestHeader(name, value);
      }
      xhr.upload.addEventListener("progress", (event) => {
        // `loaded` counts the multipart envelope too: report it in proportion to the file's size
        const total = event.lengthComputable && event.total ? event.total : file.size;
        onProgress(Math.min(file.size, Math.round((event.loaded / total) * file.size)), file.size);
      });
      xhr.addEventListener("load", () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          onProgress(file.size, file.size);
          resolve(JSON.parse(xhr.responseText));
        } else {
          reject(errorFrom(xhr.status, xhr.responseText, xhr.getResponseHeader("Retry-After")));
        }
      });
      xhr.addEventListener("error", () => reject(networkError()));
      xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "The upload was canceled.")));
      const form = new FormData();
      form.append("params", JSON.stringify(params));
      form.append("file", file, file.name);
      xhr.send(form);
    });
    return { promise, abort: () => xhr.abort() };
  }
}
