// Ferry web page: resumable uploads (tus, through the vendored tus-js-client) with rate,
// ETA, pause, resume, retry and cancel per file and a total bar; folders (dropped or picked)
// upload each file under its path in the folder; the file list, one folder at a time,
// downloads and deletes. Names are only ever put into the page as text, never as markup.
"use strict";

(function () {
  // Empty until the first action that needs an identity makes the session.
  let csrf = document.querySelector('meta[name="csrf-token"]').content;
  let maxUpload = Number(document.querySelector('meta[name="max-upload"]').content);
  const PARALLEL = 2;
  const RATE_WINDOW_MS = 5000;

  const input = document.getElementById("file-input");
  const folderInput = document.getElementById("folder-input");
  const breadcrumb = document.getElementById("breadcrumb");
  const dropZone = document.getElementById("drop-zone");
  const uploads = document.getElementById("uploads");
  const finished = document.getElementById("finished");
  const finishedList = document.getElementById("finished-list");
  const finishedCount = document.getElementById("finished-count");
  const total = document.getElementById("total");
  const totalProgress = document.getElementById("total-progress");
  const totalStatus = document.getElementById("total-status");
  const tbody = document.querySelector("#files tbody");
  const filesStatus = document.getElementById("files-status");

  const queue = [];
  const jobs = [];
  let running = 0;
  // The folder the file list shows: "" (the top) or a path ending in "/".
  let folder = "";

  function el(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (key === "text") node.textContent = value;
        else if (key === "class") node.className = value;
        else node.setAttribute(key, value);
      }
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  // A file name as text with break opportunities after separators, so that long names
  // wrap at sensible points rather than mid-word.
  function nameNode(name, tag, cls) {
    const node = el(tag, { class: cls });
    const parts = name.split(/(?<=[._\-\s/])/);
    parts.forEach((part, i) => {
      node.appendChild(document.createTextNode(part));
      if (i < parts.length - 1) node.appendChild(document.createElement("wbr"));
    });
    return node;
  }

  // A digest shortened to 12 digits; the whole value on demand.
  function digestNode(digest) {
    const details = el("details", { class: "digest" }, [
      el("summary", { text: digest.slice(0, 12) + "…", title: digest }),
      el("code", { text: digest }),
    ]);
    details.querySelector("summary").setAttribute("aria-label", "Digest " + digest.slice(0, 12) + ", show all");
    return details;
  }

  function humanSize(bytes) {
    const units = ["KiB", "MiB", "GiB", "TiB"];
    if (bytes < 1024) return bytes + " B";
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return value.toFixed(value < 10 ? 2 : 1) + " " + units[unit];
  }

  function humanTime(seconds) {
    if (!isFinite(seconds)) return "";
    if (seconds < 60) return Math.ceil(seconds) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.ceil(seconds % 60) + " s";
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  function errorText(text, status) {
    try {
      const body = JSON.parse(text);
      if (body && body.error) return body.error;
    } catch (_) { /* not JSON */ }
    return "HTTP " + status;
  }

  // ----- the session -----

  function showIdentity(info) {
    csrf = info.csrf;
    if (info.max_upload) {
      maxUpload = info.max_upload;
      document.getElementById("max-upload").textContent = humanSize(maxUpload);
    }
    document.getElementById("identity").textContent = info.identity;
    for (const node of document.querySelectorAll(".identity-name")) node.textContent = info.identity;
    document.getElementById("fingerprint").textContent = info.fingerprint;
    document.body.dataset.session = "yes";
  }

  // Makes this browser's session (and its certificate) if it has none yet.
  let making = null;
  function ensureSession() {
    if (csrf) return Promise.resolve();
    if (!making) {
      making = fetch("/api/session", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": "new" },
      }).then(async (response) => {
        const text = await response.text();
        if (!response.ok) throw new Error(errorText(text, response.status));
        showIdentity(JSON.parse(text));
      }).finally(() => { making = null; });
    }
    return making;
  }

  // The limit the Ferry server really applies (asked from it with this session's identity).
  async function refreshLimit() {
    if (!csrf) return;
    try {
      const response = await fetch("/api/session", { credentials: "same-origin" });
      if (response.ok) showIdentity(Object.assign(await response.json(), { csrf }));
    } catch (_) { /* keep the page's limit */ }
  }

  const bundleInput = document.getElementById("bundle-input");
  const bundleStatus = document.getElementById("bundle-status");
  bundleInput.addEventListener("change", async () => {
    const file = bundleInput.files[0];
    if (!file) return;
    bundleInput.value = "";
    const response = await fetch("/api/identity", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": "new", "Content-Type": "application/x-pem-file" },
      body: await file.text(),
    });
    const text = await response.text();
    if (!response.ok) {
      bundleStatus.textContent = "Cannot use that bundle: " + errorText(text, response.status);
      return;
    }
    const info = JSON.parse(text);
    showIdentity(info);
    bundleStatus.textContent = "This browser is now " + info.identity + ".";
    refreshFiles();
  });

  // ----- uploads -----

  function updateTotal() {
    const active = jobs.filter((job) => job.state !== "cancelled");
    if (active.length === 0) {
      total.hidden = true;
      return;
    }
    total.hidden = false;
    const size = active.reduce((sum, job) => sum + job.file.size, 0);
    const done = active.reduce((sum, job) => sum + job.sent, 0);
    const left = active.filter((job) => job.state !== "verified").length;
    totalProgress.value = size === 0 ? 100 : Math.floor((done / size) * 100);
    totalStatus.textContent = humanSize(done) + " of " + humanSize(size) +
      (left > 0 ? " · " + left + (left === 1 ? " file" : " files") + " to go" : " · all verified");
  }

  function setButtons(job) {
    const { state } = job;
    job.pause.hidden = state !== "uploading" && state !== "waiting";
    job.resume.hidden = state !== "paused";
    job.retry.hidden = state !== "failed";
    job.cancel.hidden = state === "verified" || state === "cancelled";
  }

  function setState(job, state, text) {
    job.state = state;
    job.item.dataset.state = state;
    if (text !== undefined) job.status.textContent = text;
    setButtons(job);
    updateTotal();
  }

  function rateOf(job, now) {
    job.samples.push([now, job.sent]);
    while (job.samples.length > 2 && now - job.samples[0][0] > RATE_WINDOW_MS) job.samples.shift();
    const [t0, b0] = job.samples[0];
    return now > t0 ? ((job.sent - b0) * 1000) / (now - t0) : 0;
  }

  // Each upload is { file, name }: the name is the file's path in a folder it came in with,
  // else its own name.
  function enqueue(picked) {
    for (const { file, name } of picked) {
      const progress = el("progress", { max: "100", value: "0", "aria-label": "Progress of " + name });
      const status = el("span", { class: "status", text: "Waiting…" });
      const button = (label, cls) => {
        const b = el("button", { type: "button", class: cls, text: label });
        b.setAttribute("aria-label", label + " the upload of " + name);
        return b;
      };
      const pause = button("Pause", "pause");
      const resume = button("Resume", "resume");
      const retry = button("Retry", "retry");
      const cancel = button("Cancel", "cancel");
      const item = el("li", { "data-state": "waiting" }, [
        nameNode(name, "span", "name"),
        el("span", { class: "actions" }, [pause, resume, retry, cancel]),
        progress,
        status,
      ]);
      uploads.append(item);
      const job = { file, name, item, progress, status, pause, resume, retry, cancel, upload: null,
        state: "waiting", sent: 0, samples: [] };
      jobs.push(job);
      if (file.size > maxUpload) {
        setState(job, "failed", "Refused: " + humanSize(file.size) + " is over the limit of " + humanSize(maxUpload) + ".");
        job.retry.hidden = true;
        continue;
      }
      pause.addEventListener("click", () => {
        if (job.upload) job.upload.abort();
        const at = queue.indexOf(job);
        if (at >= 0) queue.splice(at, 1);
        done(job);
        setState(job, "paused", "Paused at " + humanSize(job.sent) + " of " + humanSize(file.size) + ".");
      });
      resume.addEventListener("click", () => { setState(job, "waiting", "Waiting…"); queue.push(job); pump(); });
      retry.addEventListener("click", () => { setState(job, "waiting", "Waiting…"); queue.push(job); pump(); });
      cancel.addEventListener("click", () => {
        const wasRunning = job.state === "uploading";
        const at = queue.indexOf(job);
        if (at >= 0) queue.splice(at, 1);
        // abort(true) terminates the upload on the page (DELETE) and forgets its URL.
        if (job.upload) job.upload.abort(true).catch(() => {});
        setState(job, "cancelled", "Cancelled.");
        if (wasRunning) done(job);
        job.item.remove();
      });
      setButtons(job);
      queue.push(job);
    }
    updateTotal();
    pump();
  }

  function done(job) {
    if (!job.running) return;
    job.running = false;
    running -= 1;
    pump();
  }

  function pump() {
    while (running < PARALLEL && queue.length > 0) {
      const job = queue.shift();
      if (job.state !== "waiting") continue;
      running += 1;
      job.running = true;
      ensureSession().then(() => start(job), (error) => {
        setState(job, "failed", "Failed: " + error.message);
        done(job);
      });
    }
  }

  function collapse(job, text) {
    job.item.remove();
    const item = el("li", { "data-state": "verified" }, [
      nameNode(job.name, "span", "name"),
      el("span", { class: "status", text }),
    ]);
    if (job.digest) item.appendChild(digestNode(job.digest));
    finishedList.prepend(item);
    finished.hidden = false;
    finishedCount.textContent = String(finishedList.children.length);
  }

  function start(job) {
    const { file, name } = job;
    const started = performance.now();
    const metadata = { filename: file.name, filetype: file.type || "application/octet-stream" };
    // A file of a folder: its path is its name, and tells it from a namesake in another folder
    // when a reload resumes uploads.
    const inFolder = name !== file.name;
    if (inFolder) metadata.relativePath = name;
    setState(job, "uploading", "Starting…");
    job.samples = [];
    const options = {
      endpoint: "/api/tus/",
      headers: { "X-CSRF-Token": csrf },
      metadata,
      // A cut connection or a restarting server: ask again for the offset and go on.
      retryDelays: [0, 1000, 2000, 3000, 5000, 5000, 10000, 10000, 20000],
      removeFingerprintOnSuccess: true,
      onProgress(sent, size) {
        if (job.state !== "uploading") return;
        job.sent = sent;
        const now = performance.now();
        const rate = rateOf(job, now);
        job.progress.value = size === 0 ? 100 : Math.floor((sent / size) * 100);
        const eta = rate > 0 ? humanTime((size - sent) / rate) + " left" : "";
        job.status.textContent = humanSize(sent) + " of " + humanSize(size) +
          (rate > 0 ? " · " + humanSize(rate) + "/s" : "") + (eta ? " · " + eta : "");
        updateTotal();
      },
      onSuccess(payload) {
        const response = payload && payload.lastResponse;
        job.digest = response ? response.getHeader("X-Ferry-Digest") : null;
        job.sent = file.size;
        const seconds = (performance.now() - started) / 1000;
        setState(job, "verified");
        done(job);
        collapse(job, "Verified: " + humanSize(file.size) + " in " + seconds.toFixed(1) + " s");
        updateTotal();
        refreshFiles();
      },
      onError(error) {
        const response = error.originalResponse;
        const why = response ? errorText(response.getBody(), response.getStatus()) : String(error.message || error);
        setState(job, "failed", "Failed: " + why);
        done(job);
      },
    };
    if (inFolder) {
      options.fingerprint = () => Promise.resolve(["ferry", name, file.type, file.size, file.lastModified].join("-"));
    }
    const upload = new tus.Upload(file, options);
    job.upload = upload;
    // A file picked again after a reload resumes the upload the page holds for it.
    upload.findPreviousUploads().then((previous) => {
      if (job.state !== "uploading") return;
      if (previous.length > 0) {
        upload.resumeFromPreviousUpload(previous[0]);
        job.status.textContent = "Resuming…";
      }
      upload.start();
    });
  }

  const named = (files) => Array.from(files, (file) => ({ file, name: file.name }));

  input.addEventListener("change", () => {
    if (input.files.length > 0) enqueue(named(input.files));
    input.value = "";
  });

  // A picked folder: each file with its path from the folder (the folder's name first).
  folderInput.addEventListener("change", () => {
    const picked = Array.from(folderInput.files, (file) => ({ file, name: file.webkitRelativePath || file.name }));
    if (picked.length > 0) enqueue(picked);
    folderInput.value = "";
  });

  // The files below a dropped entry, with their paths: a directory's reader hands out its
  // entries in batches until an empty one.
  async function filesOf(entry) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      return [{ file, name: entry.fullPath.replace(/^\/+/, "") }];
    }
    if (!entry.isDirectory) return [];
    const reader = entry.createReader();
    const found = [];
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (batch.length === 0) break;
      for (const child of batch) found.push(...await filesOf(child));
    }
    return found;
  }

  dropZone.addEventListener("click", () => input.click());
  dropZone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      dropZone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    dropZone.addEventListener(type, () => dropZone.classList.remove("over"));
  }
  dropZone.addEventListener("drop", async (event) => {
    event.preventDefault();
    const transfer = event.dataTransfer;
    if (!transfer) return;
    // Entries are taken before the first wait: the drop's items are gone after it.
    const entries = Array.from(transfer.items || [])
      .map((item) => (item.kind === "file" && item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
    if (entries.length > 0 && entries.every((entry) => entry) && entries.some((entry) => entry.isDirectory)) {
      const picked = [];
      for (const entry of entries) picked.push(...await filesOf(entry));
      if (picked.length > 0) enqueue(picked);
    } else if (transfer.files.length > 0) {
      enqueue(named(transfer.files));
    }
  });
  // A file dropped elsewhere on the page must not make the browser navigate to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // ----- the file list -----

  async function refreshFiles() {
    if (!csrf) {
      filesStatus.textContent = "No files yet. Your identity is made with your first upload.";
      return;
    }
    let response;
    try {
      response = await fetch("/api/files", { credentials: "same-origin" });
    } catch (_) {
      filesStatus.textContent = "Cannot reach the page's server.";
      return;
    }
    const text = await response.text();
    if (!response.ok) {
      filesStatus.textContent = "Cannot list your files: " + errorText(text, response.status);
      return;
    }
    showFolder(JSON.parse(text));
  }

  // The breadcrumb of the folder shown: the top, then each folder down to it.
  function showBreadcrumb() {
    breadcrumb.replaceChildren();
    const parts = folder === "" ? [] : folder.slice(0, -1).split("/");
    const crumbs = [["All files", ""]].concat(parts.map((part, i) => [part, parts.slice(0, i + 1).join("/") + "/"]));
    crumbs.forEach(([label, path], i) => {
      if (i > 0) breadcrumb.appendChild(el("span", { class: "separator", text: "/", "aria-hidden": "true" }));
      if (i === crumbs.length - 1) {
        breadcrumb.appendChild(el("span", { class: "here", "aria-current": "location", text: label }));
      } else {
        const up = el("button", { type: "button", class: "crumb", text: label });
        up.addEventListener("click", () => { folder = path; refreshFiles(); });
        breadcrumb.appendChild(up);
      }
    });
  }

  // One level of the list: the files directly in the folder shown and each folder in it once.
  let lastFiles = [];
  function showFolder(files) {
    lastFiles = files;
    const below = files.filter((file) => file.name.startsWith(folder));
    if (folder !== "" && below.length === 0) {
      folder = "";
      return showFolder(files);
    }
    showBreadcrumb();
    const folders = new Map();
    const here = [];
    for (const file of below) {
      const rest = file.name.slice(folder.length);
      const slash = rest.indexOf("/");
      if (slash < 0) {
        here.push(file);
        continue;
      }
      const path = folder + rest.slice(0, slash + 1);
      const seen = folders.get(path) || { files: 0, size: 0 };
      folders.set(path, { files: seen.files + 1, size: seen.size + file.size });
    }
    tbody.replaceChildren();
    for (const [path, { files: count, size }] of folders) {
      const label = path.slice(folder.length);
      const open = el("button", { type: "button", class: "folder" }, [nameNode(label, "span", "file-name")]);
      open.setAttribute("aria-label", "Open the folder " + path);
      open.addEventListener("click", () => { folder = path; showFolder(lastFiles); });
      tbody.appendChild(el("tr", { class: "folder-row" }, [
        el("td", { class: "name" }, [open]),
        el("td", { class: "num", text: humanSize(size), title: size + " bytes" }),
        el("td", { class: "digest-cell", text: count + (count === 1 ? " file" : " files") }),
        el("td", { class: "when" }),
        el("td", { class: "actions" }),
      ]));
    }
    for (const file of here) {
      const base = file.name.slice(folder.length);
      const link = el("a", { href: "/api/file?name=" + encodeURIComponent(file.name), download: base, text: "Download" });
      link.setAttribute("aria-label", "Download " + file.name);
      const remove = el("button", { type: "button", class: "danger", text: "Delete" });
      remove.setAttribute("aria-label", "Delete " + file.name);
      remove.addEventListener("click", () => removeFile(file.name));
      const when = new Date(file.modified * 1000);
      tbody.appendChild(el("tr", null, [
        el("td", { class: "name" }, [nameNode(base, "span", "file-name")]),
        el("td", { class: "num", text: humanSize(file.size), title: file.size + " bytes" }),
        el("td", { class: "digest-cell" }, [digestNode(file.digest)]),
        el("td", { class: "when" }, [el("time", { datetime: when.toISOString(), text: when.toLocaleString() })]),
        el("td", { class: "actions" }, [link, remove]),
      ]));
    }
    const where = folder === "" ? "" : " in " + folder;
    filesStatus.textContent = below.length === 0
      ? "No files yet."
      : below.length + (below.length === 1 ? " file" : " files") + where + ".";
  }

  async function removeFile(name) {
    if (!window.confirm("Delete " + name + " from the server?")) return;
    const response = await fetch("/api/file?name=" + encodeURIComponent(name), {
      method: "DELETE",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf },
    });
    if (!response.ok) {
      filesStatus.textContent = "Cannot delete " + name + ": " + errorText(await response.text(), response.status);
      return;
    }
    await refreshFiles();
    filesStatus.textContent = "Deleted " + name + ". " + filesStatus.textContent;
  }

  document.getElementById("refresh").addEventListener("click", refreshFiles);
  refreshFiles();
  refreshLimit();
})();
