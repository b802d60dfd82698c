// imgproc page: uploads with progress, and a live list of this visitor's tasks.
// Plain ES module, no dependencies, no build step. Every server-provided string goes
// into the DOM through textContent or an attribute — never through innerHTML.

// URLs are relative to the page (/frontend/), so the page also works when the whole
// app is mounted under a path prefix behind an ingress.
const ROOT = new URL("../", document.baseURI);
const API = new URL("api/", ROOT);

const PAGE_SIZE = 20;
const PARALLEL_UPLOADS = 2; // leaves browser connections free for the status wait and thumbnails
const WAIT_SECONDS = 25; // long poll (?wait=): the server answers as soon as the task is done
const WAIT_TOO_SHORT_MS = 500; // a wait answered sooner without an outcome: fall back to the timer
const POLL_FAST_MS = 1000; // fallback when the long poll is not available: unfinished, just changed
const POLL_SLOW_MS = 5000; // ceiling of that fallback's back-off while work is unfinished but quiet
const POLL_IDLE_MS = 30000; // everything terminal: only catches uploads from other tabs
const POLL_ERROR_MAX_MS = 30000;
const TERMINAL = new Set(["completed", "failed"]);
const STATUS_LABEL = { pending: "Pending", processing: "Processing", completed: "Completed", failed: "Failed" };

const $ = (id) => document.getElementById(id);
const el = {
  input: $("file-input"),
  zone: $("dropzone"),
  uploads: $("uploads"),
  tasks: $("tasks"),
  empty: $("empty"),
  listState: $("list-state"),
  heading: $("tasks-heading"),
  pager: $("pager"),
  newer: $("newer"),
  older: $("older"),
  pageInfo: $("page-info"),
  announcer: $("announcer"),
  template: $("task-template"),
  outputHint: $("output-hint"),
  presets: $("presets"),
  presetOptions: $("preset-options"),
  presetCount: $("preset-count"),
};

// ---------------------------------------------------------------- formatting

const numberFormat = (digits) => new Intl.NumberFormat(undefined, { maximumFractionDigits: digits });
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function formatBytes(n) {
  if (n == null) return null;
  const units = ["B", "kB", "MB", "GB"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${numberFormat(unit > 0 && value < 10 ? 1 : 0).format(value)} ${units[unit]}`;
}

const formatDims = (w, h) => (w && h ? `${w}\u00d7${h}` : null);

// Output formats as the API names them ("jpeg"), in the order a <picture> lists its sources.
const FORMAT_ORDER = ["avif", "webp", "jpeg"];
const FORMAT_LABEL = { jpeg: "JPEG", webp: "WebP", avif: "AVIF" };
const FORMAT_EXTENSION = { jpeg: "jpg", webp: "webp", avif: "avif" };
const formatLabel = (format) => FORMAT_LABEL[format] || String(format).toUpperCase();
const formatRank = (format) => FORMAT_ORDER.indexOf(format); // unknown (newer) formats: -1, first

// "a", "a and b", "a, b and c"
function joinWords(words, conjunction = "and") {
  if (words.length < 2) return words.join("");
  return `${words.slice(0, -1).join(", ")} ${conjunction} ${words[words.length - 1]}`;
}

function formatDuration(ms) {
  if (ms == null) return null;
  return ms < 1000 ? `${numberFormat(ms < 10 ? 1 : 0).format(ms)} ms` : `${numberFormat(1).format(ms / 1000)} s`;
}

// "1600×1200 PNG, 2.4 MB": absent parts (null) are left out.
const describeImage = (dims, format, size) => [[dims, format].filter(Boolean).join(" "), size].filter(Boolean).join(", ");

// "photo.PNG" -> "photo.jpg": the suggested name for the downloaded result.
function resultName(filename, id, format = "jpeg") {
  const stem = (filename || "").replace(/\.[^.]*$/, "").trim();
  return `${stem || `imgproc-${id}`}.${FORMAT_EXTENSION[format] || format}`;
}

// The API returns app-relative paths ("/api/tasks/1/result"); keep them under our prefix.
function appUrl(path) {
  return path.startsWith(ROOT.pathname) ? new URL(path, ROOT) : new URL(path.replace(/^\/+/, ""), ROOT);
}

// ---------------------------------------------------------------- announcements

// Polite live region: a short line per event; old lines are trimmed so it stays small.
function announce(text) {
  const line = document.createElement("p");
  line.textContent = text;
  el.announcer.append(line);
  while (el.announcer.childElementCount > 5) el.announcer.firstElementChild.remove();
}

// ---------------------------------------------------------------- errors

const FALLBACK_DETAIL = {
  403: "The request was refused.",
  413: "The file is too large.",
  415: "Not a supported image (JPEG, PNG, WebP, GIF, BMP or TIFF).",
  422: "The image is empty, corrupt or has too many pixels.",
  429: "Too many uploads right now.",
  503: "The service is busy or its queue is unavailable.",
};

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null; // e.g. an HTML error page from a proxy
  }
}

function retrySeconds(header) {
  if (!header) return null;
  if (/^\d+$/.test(header.trim())) return Number(header);
  const date = Date.parse(header); // Retry-After may also be an HTTP date
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

// Words for a failed request: the API's own `detail` when there is one.
function describeFailure(status, body, retryAfter) {
  let detail = body && body.detail;
  if (Array.isArray(detail)) {
    // FastAPI validation errors: a list of {loc, msg, type}.
    detail = detail.map((item) => (item && item.msg) || String(item)).join("; ");
  }
  if (typeof detail !== "string" || !detail.trim()) {
    detail = status
      ? FALLBACK_DETAIL[status] || `The server answered ${status}.`
      : "Network error: the server could not be reached.";
  }
  if (status === 429 || status === 503) {
    const seconds = retrySeconds(retryAfter);
    detail += seconds != null ? ` Retry after ${seconds} s.` : " Retry shortly.";
  }
  return detail;
}

const isRetryable = (status) => status === 0 || status === 429 || status >= 500;

// ---------------------------------------------------------------- presets

// /api/presets, once: null until it answers, and left null when it cannot (an older API, a
// network error). Then nothing changes: no picker, today's hint, uploads without a `presets`
// field, so the server makes its default presets.
let presetConfig = null;

const hasPresetPicker = () => presetConfig !== null && presetConfig.items.length > 1;

async function loadPresets() {
  let response;
  try {
    response = await fetch(new URL("presets", API), { credentials: "same-origin" });
  } catch {
    return;
  }
  if (!response.ok) return;
  const body = parseJson(await response.text());
  if (!body || !Array.isArray(body.items) || body.items.length === 0) return;
  presetConfig = { items: body.items, max: body.max_outputs_per_task };
  showPresets();
}

// "800×600 contain, JPEG + WebP"
const describePreset = (preset) =>
  `${formatDims(preset.width, preset.height)} ${preset.fit}, ${preset.formats.map(formatLabel).join(" + ")}` +
  (preset.animated ? ", animated" : "");

const withArticle = (format) => `${format === "avif" ? "an" : "a"} ${formatLabel(format)}`;

// The first words of the upload hint. For the single default preset (800×600 contain JPEG)
// this is exactly the page's own wording.
function describeOutputs(items) {
  if (items.length === 1) {
    const [preset] = items;
    const dims = formatDims(preset.width, preset.height);
    const made = joinWords(preset.formats.map(withArticle));
    return preset.fit === "cover"
      ? `Each image becomes ${made} cropped to fill at most ${dims} pixels`
      : `Each image becomes ${made} of at most ${dims} pixels`;
  }
  const largest = items.reduce((a, b) => (b.width * b.height > a.width * a.height ? b : a));
  // The familiar first: JPEG, WebP, AVIF.
  const formats = [...new Set(items.flatMap((preset) => preset.formats))].sort((a, b) => formatRank(b) - formatRank(a));
  return (
    `Each image becomes the sizes ticked below, up to ${formatDims(largest.width, largest.height)} pixels` +
    ` in ${joinWords(formats.map(formatLabel), "or")}`
  );
}

function showPresets() {
  const { items } = presetConfig;
  const hint = describeOutputs(items);
  if (el.outputHint.textContent !== hint) el.outputHint.textContent = hint;
  if (!hasPresetPicker()) return;
  el.presetOptions.replaceChildren(...items.map(presetOption));
  el.presets.hidden = false;
  updatePresetCount();
  if (rows.size > 0) poller.kick(); // rows listed before this answer now show their variants (variantsShown)
}

function presetOption(preset) {
  const label = document.createElement("label");
  label.className = "preset";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.name = "preset";
  box.value = preset.name;
  box.checked = Boolean(preset.default);
  box.addEventListener("change", updatePresetCount);
  const name = document.createElement("span");
  name.className = "preset-name";
  name.textContent = preset.name;
  const description = document.createElement("span");
  description.className = "preset-desc";
  description.textContent = describePreset(preset);
  label.append(box, name, " ", description);
  return label;
}

// The ticked names; empty when the picker is not shown (the server then uses its defaults).
function chosenPresets() {
  if (!hasPresetPicker()) return [];
  return [...el.presetOptions.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
}

// "3 files per image (at most 8)." The server has the last word: over the cap, uploads are
// still sent and its 422 is shown on each, like any refusal.
function updatePresetCount() {
  const { items, max } = presetConfig;
  const names = chosenPresets();
  const chosen = names.length > 0 ? items.filter((p) => names.includes(p.name)) : items.filter((p) => p.default);
  const outputs = chosen.reduce((sum, preset) => sum + preset.formats.length, 0);
  const files = `${outputs} ${outputs === 1 ? "file" : "files"} per image`;
  const over = Number.isInteger(max) && outputs > max;
  let text = names.length > 0 ? files : `None ticked: the default presets (${joinWords(chosen.map((p) => p.name))}), ${files}`;
  if (over) text += `; at most ${max} are allowed, untick some.`;
  else text += Number.isInteger(max) ? ` (at most ${max}).` : ".";
  el.presetCount.textContent = text;
  el.presetCount.dataset.over = String(over);
}

// ---------------------------------------------------------------- uploads

const uploadQueue = [];
let activeUploads = 0;

// The first /api request issues the identity cookie. Uploads wait for the first list
// request so that several parallel first requests cannot each create a new identity.
let identityReady = Promise.resolve();

function addFiles(files) {
  const presets = chosenPresets(); // what was ticked when the files were chosen, kept for a retry
  for (const file of files) {
    const job = { file, presets, row: createUploadRow(file) };
    uploadQueue.push(job);
  }
  pumpUploads();
}

function pumpUploads() {
  while (activeUploads < PARALLEL_UPLOADS && uploadQueue.length > 0) {
    const job = uploadQueue.shift();
    activeUploads += 1;
    runUpload(job).finally(() => {
      activeUploads -= 1;
      pumpUploads();
    });
  }
}

function createUploadRow(file) {
  const row = document.createElement("li");
  row.className = "upload";
  row.dataset.state = "queued";

  const name = document.createElement("span");
  name.className = "upload-name";
  name.textContent = file.name || "(unnamed file)";

  const size = document.createElement("span");
  size.className = "upload-size";
  size.textContent = formatBytes(file.size);

  const progress = document.createElement("progress");
  progress.max = 100;
  progress.value = 0;
  progress.setAttribute("aria-label", `Upload progress of ${file.name}`);

  const status = document.createElement("span");
  status.className = "upload-status";
  status.textContent = "Waiting…";

  const actions = document.createElement("span");
  actions.className = "upload-actions";

  row.append(name, size, progress, status, actions);
  el.uploads.append(row);
  return row;
}

function setUploadState(row, state, text) {
  row.dataset.state = state;
  row.querySelector(".upload-status").textContent = text;
  if (state === "done") row.querySelector("progress").value = 100;
}

function addRowButton(row, label, accessibleName, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "button small secondary";
  button.textContent = label;
  button.setAttribute("aria-label", accessibleName);
  button.addEventListener("click", onClick);
  row.querySelector(".upload-actions").append(button);
  return button;
}

async function runUpload(job) {
  const { file, presets, row } = job;
  const progress = row.querySelector("progress");
  row.querySelector(".upload-actions").replaceChildren();
  progress.value = 0;
  await identityReady;
  setUploadState(row, "uploading", "Uploading…");
  const result = await sendFile(file, presets, (loaded, total) => {
    progress.value = Math.round((loaded / total) * 100);
  });

  if (result.status === 200 && result.body && result.body.task_id) {
    setUploadState(row, "done", "Uploaded; processing…");
    announce(`${file.name} uploaded.`);
    // Known as pending from now on, so its outcome is announced even if the worker is done
    // before the list first shows it.
    if (!lastStatus.has(result.body.task_id)) lastStatus.set(result.body.task_id, "pending");
    offset = 0; // new tasks are listed first: show the page they are on
    poller.kick();
    // The task list now shows the file; the upload line has done its job.
    setTimeout(() => row.remove(), 4000);
    return;
  }

  const message = describeFailure(result.status, result.body, result.retryAfter);
  setUploadState(row, "error", message);
  row.querySelector(".upload-status").setAttribute("role", "alert");
  if (isRetryable(result.status)) {
    addRowButton(row, "Retry", `Retry ${file.name}`, () => {
      row.querySelector(".upload-status").removeAttribute("role");
      setUploadState(row, "queued", "Waiting…");
      uploadQueue.push(job);
      pumpUploads();
    });
  }
  addRowButton(row, "Dismiss", `Dismiss ${file.name}`, () => {
    row.remove();
    el.input.focus();
  });
}

// XMLHttpRequest rather than fetch: fetch has no upload progress events.
function sendFile(file, presets, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", new URL("newTask", API));
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () =>
      resolve({
        status: xhr.status,
        body: parseJson(xhr.responseText),
        retryAfter: xhr.getResponseHeader("Retry-After"),
      }),
    );
    // A proxy that rejects an oversized body may reset the connection: status 0.
    for (const type of ["error", "abort", "timeout"]) {
      xhr.addEventListener(type, () => resolve({ status: 0, body: null, retryAfter: null }));
    }
    const form = new FormData();
    if (presets.length > 0) form.append("presets", presets.join(",")); // none: the server's defaults
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

// ---------------------------------------------------------------- task list

const rows = new Map(); // task id -> <li>
const lastStatus = new Map(); // task id -> status, to announce changes
let offset = 0;
let total = 0;
let listedOnce = false;

class HttpError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function fetchPage() {
  const url = new URL("tasks", API);
  url.searchParams.set("limit", String(PAGE_SIZE));
  url.searchParams.set("offset", String(offset));
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) {
    const body = parseJson(await response.text());
    throw new HttpError(response.status, describeFailure(response.status, body, response.headers.get("Retry-After")));
  }
  return response.json();
}

// Loads the current page and updates the list in place; returns what the poller needs.
async function refresh() {
  let page = await fetchPage();
  if (page.items.length === 0 && offset > 0 && page.total > 0) {
    // Deletions emptied this page: show the last page that still has something.
    offset = Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE;
    page = await fetchPage();
  }
  return render(page);
}

function render(page) {
  let changed = false;
  let unfinished = false;
  let oldestUnfinished = null; // queued first, so usually the next to finish
  const seen = new Set();

  page.items.forEach((task, index) => {
    seen.add(task.id);
    let row = rows.get(task.id);
    if (!row) {
      row = createTaskRow(task.id);
      rows.set(task.id, row);
    }
    if (updateTaskRow(row, task)) changed = true;
    // Only move a row when it is out of place: moving a node drops keyboard focus inside it.
    if (el.tasks.children[index] !== row) el.tasks.insertBefore(row, el.tasks.children[index] || null);

    const before = lastStatus.get(task.id);
    if (listedOnce && before && before !== task.status) {
      const name = task.filename || `Task ${task.id}`;
      announce(task.status === "failed" && task.error ? `${name}: failed. ${task.error}` : `${name}: ${task.status}.`);
    }
    lastStatus.set(task.id, task.status);
    if (!TERMINAL.has(task.status)) {
      unfinished = true;
      if (oldestUnfinished === null || task.id < oldestUnfinished) oldestUnfinished = task.id;
    }
  });

  for (const [id, row] of rows) {
    if (!seen.has(id)) {
      row.remove();
      rows.delete(id);
      changed = true;
    }
  }

  total = page.total;
  el.empty.hidden = total > 0;
  el.pager.hidden = total <= PAGE_SIZE;
  el.pageInfo.textContent =
    page.items.length > 0 ? `${offset + 1}\u2013${offset + page.items.length} of ${total}` : `0 of ${total}`;
  el.newer.disabled = offset === 0;
  el.older.disabled = offset + PAGE_SIZE >= total;
  listedOnce = true;
  return { changed, unfinished, oldestUnfinished };
}

function createTaskRow(id) {
  const row = el.template.content.firstElementChild.cloneNode(true);
  row.dataset.taskId = String(id);
  const img = row.querySelector("img");
  img.addEventListener("load", () => {
    row.querySelector(".thumb-placeholder").hidden = true;
  });
  img.addEventListener("error", () => {
    img.hidden = true;
    const placeholder = row.querySelector(".thumb-placeholder");
    placeholder.hidden = false;
    placeholder.dataset.state = "missing";
  });
  return row;
}

function setFact(row, cls, text) {
  const fact = row.querySelector(`.${cls}`);
  fact.hidden = !text;
  fact.querySelector("dd").textContent = text || "";
}

// A completed task's variants (largest first); none for older APIs and unfinished tasks.
const variantsOf = (task) => (task.status === "completed" && Array.isArray(task.variants) ? task.variants : []);

// Today's page shows one result; the variants appear when there is more to show: several of
// them, or presets to choose from (so the one preset an upload asked for is named too). With the
// default configuration (one preset, one JPEG) the row is exactly as it was.
const variantsShown = (variants) => variants.length > 1 || (variants.length === 1 && hasPresetPicker());

// The main result (what result_url serves and the metadata describes) is the first JPEG made,
// or another format when no JPEG was asked for; the API flags it.
function mainFormat(variants) {
  const main = variants.find((v) => v.main);
  return main ? main.format : "jpeg";
}

// Idempotent: returns false (and touches nothing) when the task has not changed.
function updateTaskRow(row, task) {
  const variants = variantsOf(task);
  const shown = variantsShown(variants);
  const signature = `${task.status}|${task.updated_at}|${task.filename}|${shown ? variants.length : 0}`;
  if (row.dataset.signature === signature) return false;
  row.dataset.signature = signature;
  row.dataset.status = task.status;

  const name = task.filename || `Task ${task.id}`;
  const meta = task.metadata || {};
  const format = mainFormat(variants);
  row.querySelector(".filename").textContent = name;
  const badge = row.querySelector(".badge");
  badge.textContent = STATUS_LABEL[task.status] || task.status;
  badge.className = `badge badge-${task.status}`;

  const original = formatDims(meta.original_width, meta.original_height);
  setFact(row, "fact-before", describeImage(original, meta.source_format, formatBytes(meta.original_size)));
  let after = null;
  if (task.status === "completed") {
    const saved =
      meta.original_size > 0 && meta.processed_size != null
        ? Math.round((1 - meta.processed_size / meta.original_size) * 100)
        : null;
    const savedText = saved == null ? null : saved >= 0 ? `\u2212${saved}%` : `+${-saved}%`;
    const size = formatBytes(meta.processed_size);
    after = describeImage(
      formatDims(meta.width, meta.height),
      formatLabel(format),
      size && savedText ? `${size} (${savedText})` : size,
    );
  }
  setFact(row, "fact-after", after);
  setFact(row, "fact-time", task.status === "completed" ? formatDuration(meta.processing_ms) : null);

  const time = row.querySelector("time");
  const created = new Date(task.created_at);
  time.dateTime = task.created_at;
  time.textContent = Number.isNaN(created.getTime()) ? task.created_at : dateFormat.format(created);

  const error = row.querySelector(".task-error");
  error.hidden = task.status !== "failed";
  error.textContent = task.status === "failed" ? task.error || "Processing failed." : "";

  const img = row.querySelector("img");
  const placeholder = row.querySelector(".thumb-placeholder");
  const download = row.querySelector(".download");
  if (task.status === "completed" && task.result_url) {
    const url = appUrl(task.result_url).href;
    img.alt = `Result of ${name}`;
    if (img.getAttribute("src") !== url) img.src = url;
    img.hidden = false;
    download.href = url;
    download.download = resultName(task.filename, task.id, format);
    download.setAttribute("aria-label", `Download ${name} as ${formatLabel(format)}`);
    download.hidden = false;
  } else {
    img.hidden = true;
    img.removeAttribute("src");
    placeholder.hidden = false;
    placeholder.dataset.state = task.status;
    download.hidden = true;
    download.removeAttribute("href");
  }
  renderVariants(row, task, name, shown ? variants : []);
  row.querySelector(".delete").setAttribute("aria-label", `Delete ${name}`);
  return true;
}

// ---------------------------------------------------------------- variants and the snippet

function renderVariants(row, task, name, variants) {
  const box = row.querySelector(".variants");
  const list = row.querySelector(".variant-list");
  const code = row.querySelector(".snippet-code code");
  if (variants.length === 0) {
    box.hidden = true;
    delete box.dataset.key;
    list.replaceChildren();
    code.textContent = "";
    return;
  }
  // Rebuilt only when they changed: an open <details> stays open, a focused link keeps focus.
  const key = JSON.stringify([variants, task.srcset, name]);
  if (box.dataset.key === key) return;
  box.dataset.key = key;

  list.setAttribute("aria-label", `Sizes and formats of ${name}`);
  list.replaceChildren(...variants.map(variantItem));
  const snippet = pictureSnippet(task.srcset, variants, task.metadata || {});
  code.textContent = snippet;
  const details = row.querySelector(".snippet");
  details.hidden = !snippet;
  row.querySelector(".copy").setAttribute("aria-label", `Copy the HTML for ${name}`);
  row.querySelector(".copy-status").textContent = "";
  box.hidden = false;
}

// "web JPEG  800×600, 13 kB", the name a link to the file.
function variantItem(variant) {
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.href = appUrl(variant.url).href;
  link.textContent = `${variant.preset} ${formatLabel(variant.format)}`;
  const facts = document.createElement("span");
  facts.className = "variant-facts";
  facts.textContent = [formatDims(variant.width, variant.height), formatBytes(variant.size)].filter(Boolean).join(", ");
  item.append(link, " ", facts);
  return item;
}

// The snippet is page text (textContent), but it is meant to be pasted into HTML.
const attr = (value) => String(value).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");

// "/api/…/web.webp 800w, /api/…/big.webp 1600w" -> [{url, descriptor, width}], absolute URLs.
function srcsetCandidates(srcset) {
  return String(srcset || "")
    .split(/,\s+/)
    .map((candidate) => candidate.trim().split(/\s+/))
    .filter(([url]) => url)
    .map(([url, descriptor = ""]) => ({ url: appUrl(url).href, descriptor, width: Number.parseInt(descriptor, 10) }));
}

const srcsetText = (candidates) =>
  candidates.map((c) => (c.descriptor ? `${c.url} ${c.descriptor}` : c.url)).join(", ");

// A <picture> from the task's srcset: a <source> per format a browser may not take (AVIF, then
// WebP), then an <img> with the JPEG (or, without one, the last format) that every browser shows.
// Its src is the main result's width when that format has it, else the largest; its width and
// height reserve the space. `sizes` is required beside w descriptors: the image's own width, or the
// viewport's when that is narrower.
function pictureSnippet(srcset, variants, meta) {
  const formats = Object.keys(srcset || {})
    .filter((format) => srcset[format])
    .sort((a, b) => formatRank(a) - formatRank(b));
  if (formats.length === 0) return "";
  const imgFormat = formats.includes("jpeg") ? "jpeg" : formats[formats.length - 1];
  const candidates = srcsetCandidates(srcset[imgFormat]);
  if (candidates.length === 0) return "";
  const src = candidates.find((c) => c.width === meta.width) || candidates[candidates.length - 1];
  const made = variants.find((v) => appUrl(v.url).href === src.url);
  const width = made ? made.width : src.width;
  const height = made ? made.height : null;
  const sizes = Number.isFinite(width) ? `(max-width: ${width}px) 100vw, ${width}px` : null;
  const sizesAttr = sizes ? ` sizes="${attr(sizes)}"` : "";

  const lines = ["<picture>"];
  for (const format of formats.filter((f) => f !== imgFormat)) {
    const list = srcsetText(srcsetCandidates(srcset[format]));
    lines.push(`  <source type="image/${attr(format)}" srcset="${attr(list)}"${sizesAttr}>`);
  }
  const box = [width, height].every(Number.isFinite) ? ` width="${width}" height="${height}"` : "";
  lines.push(
    `  <img src="${attr(src.url)}" srcset="${attr(srcsetText(candidates))}"${sizesAttr}${box} alt="">`,
    "</picture>",
  );
  return lines.join("\n");
}

// navigator.clipboard where the browser allows it; else the snippet is selected for Ctrl+C
// (document.execCommand("copy") is tried on that selection: older browsers, or no permission).
async function copySnippet(row, button) {
  const code = row.querySelector(".snippet-code code");
  const status = row.querySelector(".copy-status");
  const name = row.querySelector(".filename").textContent;
  let message;
  try {
    if (!navigator.clipboard || !navigator.clipboard.writeText) throw new Error("no clipboard API");
    await navigator.clipboard.writeText(code.textContent);
    message = "Copied.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents(code);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
    message = copied ? "Copied." : "Selected: press Ctrl+C (\u2318C on a Mac) to copy.";
  }
  status.textContent = message;
  announce(`HTML for ${name}: ${message.charAt(0).toLowerCase()}${message.slice(1)}`);
  clearTimeout(Number(button.dataset.timer));
  button.dataset.timer = String(
    setTimeout(() => {
      if (status.textContent === message) status.textContent = "";
    }, 6000),
  );
}

async function deleteTask(row, button) {
  const id = row.dataset.taskId;
  const name = row.querySelector(".filename").textContent;
  button.disabled = true;
  button.textContent = "Deleting…";
  let response = null;
  try {
    response = await fetch(new URL(`tasks/${encodeURIComponent(id)}`, API), {
      method: "DELETE",
      credentials: "same-origin",
    });
  } catch {
    // network failure: handled below like any other refusal
  }
  // 404: already gone (another tab deleted it) — the outcome the user wanted.
  if (response && (response.ok || response.status === 404)) {
    row.remove();
    rows.delete(Number(id));
    lastStatus.delete(Number(id));
    announce(`${name} deleted.`);
    el.heading.focus(); // the button that had focus is gone; keep keyboard users in the list
    poller.kick();
    return;
  }
  const body = response ? parseJson(await response.text()) : null;
  button.disabled = false;
  button.textContent = "Delete";
  announce(`Could not delete ${name}: ${describeFailure(response ? response.status : 0, body, null)}`);
}

// ---------------------------------------------------------------- polling

// Waits (long poll) for one unfinished task: the server answers as soon as it is terminal, or
// after WAIT_SECONDS. Resolves to true when the wait did its job (the task finished or the full
// wait passed), false when it cannot be used (an error, or an answer without waiting).
async function waitForTask(id, signal) {
  const url = new URL(`tasks/${encodeURIComponent(id)}`, API);
  url.searchParams.set("wait", String(WAIT_SECONDS));
  const started = Date.now();
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store", signal });
  if (response.status === 404) return true; // deleted meanwhile: the refresh drops its row
  if (!response.ok) return false;
  const task = await response.json();
  return TERMINAL.has(task.status) || Date.now() - started >= WAIT_TOO_SHORT_MS;
}

// One loop. While tasks are unfinished: refresh the list, then wait (long poll) for the oldest
// unfinished one, and refresh again when it answers — no timer, no request while nothing
// happens. When all are terminal: a slow refresh (uploads from other tabs). Stopped while the
// tab is hidden; a timer with back-off if the wait fails; exponential back-off on errors.
const poller = {
  timer: null,
  waiting: null, // AbortController of the long poll in flight
  delay: POLL_FAST_MS,
  failures: 0,
  running: false,
  again: false,

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = null;
    if (!document.hidden) this.timer = setTimeout(() => this.tick(), ms);
  },

  kick() {
    this.delay = POLL_FAST_MS;
    if (this.waiting) this.waiting.abort(); // its loop refreshes at once
    else this.schedule(0);
  },

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.waiting) {
      this.waiting.abort();
      this.waiting = null;
    }
  },

  async tick() {
    if (this.running) {
      this.again = true; // a kick during a request: refresh once more right after it
      return;
    }
    this.running = true;
    let next;
    let waitFor = null;
    try {
      const { changed, unfinished, oldestUnfinished } = await refresh();
      this.failures = 0;
      el.listState.textContent = "";
      const busy = unfinished || activeUploads > 0 || uploadQueue.length > 0;
      if (!busy) next = POLL_IDLE_MS;
      else next = this.delay = changed ? POLL_FAST_MS : Math.min(this.delay * 1.5, POLL_SLOW_MS);
      if (oldestUnfinished !== null && !this.again) waitFor = oldestUnfinished;
    } catch (error) {
      this.failures += 1;
      next = Math.min(POLL_ERROR_MAX_MS, POLL_FAST_MS * 2 ** this.failures);
      const why = error instanceof HttpError ? error.message : "the server could not be reached.";
      el.listState.textContent = `Could not update the list (${why.replace(/\.$/, "")}); retrying in ${Math.round(next / 1000)} s.`;
    } finally {
      this.running = false;
    }
    if (this.again) {
      this.again = false;
      next = 0;
    }
    if (waitFor !== null && !document.hidden) {
      this.waitThenTick(waitFor, next);
      return;
    }
    this.schedule(next);
  },

  async waitThenTick(id, fallbackMs) {
    clearTimeout(this.timer);
    this.timer = null;
    const controller = new AbortController();
    this.waiting = controller;
    let useful = false;
    try {
      useful = await waitForTask(id, controller.signal);
    } catch {
      useful = controller.signal.aborted; // aborted by a kick: refresh now; a network error: back off
    }
    if (this.waiting === controller) this.waiting = null;
    if (document.hidden) return; // stopped; the visibility handler kicks on return
    this.schedule(useful ? 0 : fallbackMs);
  },
};

document.addEventListener("visibilitychange", () => {
  if (document.hidden) poller.stop();
  else poller.kick(); // catch up at once when the visitor comes back
});

// ---------------------------------------------------------------- wiring

el.input.addEventListener("change", () => {
  addFiles([...el.input.files]);
  el.input.value = ""; // so choosing the same file again fires `change` again
});

const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
let dragDepth = 0;

// The whole window accepts drops: a file dropped beside the zone would otherwise make the
// browser navigate away from the page to display it.
window.addEventListener("dragenter", (event) => {
  if (!hasFiles(event)) return;
  dragDepth += 1;
  el.zone.classList.add("dragging");
});
window.addEventListener("dragleave", (event) => {
  if (!hasFiles(event)) return;
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) el.zone.classList.remove("dragging");
});
window.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
});
window.addEventListener("drop", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth = 0;
  el.zone.classList.remove("dragging");
  addFiles([...event.dataTransfer.files]);
});

// Pasted images (a screenshot in the clipboard) are uploads too.
window.addEventListener("paste", (event) => {
  const files = event.clipboardData ? [...event.clipboardData.files] : [];
  if (files.length > 0) {
    event.preventDefault();
    addFiles(files);
  }
});

el.tasks.addEventListener("click", (event) => {
  const button = event.target.closest("button.delete");
  if (button) deleteTask(button.closest(".task"), button);
  const copy = event.target.closest("button.copy");
  if (copy) copySnippet(copy.closest(".task"), copy);
});

function goToOffset(newOffset) {
  offset = Math.max(0, newOffset);
  poller.kick();
  el.heading.focus();
}
el.newer.addEventListener("click", () => goToOffset(offset - PAGE_SIZE));
el.older.addEventListener("click", () => goToOffset(offset + PAGE_SIZE));

// First load: also the request that obtains the identity cookie for the uploads. The presets
// come beside it (that route issues no cookie).
identityReady = poller.tick();
loadPresets();
