// Ferry web page: uploads with per-file progress, the file list, downloads and deletes.
// Names are only ever put into the page with textContent, never as markup.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const maxUpload = Number(document.querySelector('meta[name="max-upload"]').content);
  const PARALLEL = 2;

  const form = document.getElementById("upload-form");
  const input = document.getElementById("file-input");
  const dropZone = document.getElementById("drop-zone");
  const uploads = document.getElementById("uploads");
  const tbody = document.querySelector("#files tbody");
  const filesStatus = document.getElementById("files-status");

  const queue = [];
  let running = 0;

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

  function errorText(xhrOrResponseText, status) {
    try {
      const body = JSON.parse(xhrOrResponseText);
      if (body && body.error) return body.error;
    } catch (_) { /* not JSON */ }
    return "HTTP " + status;
  }

  // ----- uploads -----

  function enqueue(files) {
    for (const file of files) {
      const name = file.name;
      const progress = el("progress", { max: "100", value: "0", "aria-label": "Progress of " + name });
      const status = el("span", { class: "status", text: "Waiting…" });
      const cancel = el("button", { type: "button", class: "cancel", text: "Cancel" });
      cancel.setAttribute("aria-label", "Cancel the upload of " + name);
      const item = el("li", { "data-state": "waiting" }, [
        el("span", { class: "name", text: name }),
        cancel,
        progress,
        status,
      ]);
      uploads.prepend(item);
      if (file.size > maxUpload) {
        finish(item, "failed", "Refused: " + humanSize(file.size) + " is over the limit of " + humanSize(maxUpload) + ".");
        continue;
      }
      const job = { file, item, progress, status, cancel, xhr: null, cancelled: false };
      cancel.addEventListener("click", () => {
        job.cancelled = true;
        if (job.xhr) job.xhr.abort();
        else finish(item, "failed", "Cancelled.");
      });
      queue.push(job);
    }
    pump();
  }

  function finish(item, state, text) {
    item.dataset.state = state;
    item.querySelector(".status").textContent = text;
    const cancel = item.querySelector(".cancel");
    if (cancel) cancel.remove();
  }

  function pump() {
    while (running < PARALLEL && queue.length > 0) {
      const job = queue.shift();
      if (job.cancelled) continue;
      running += 1;
      send(job, () => {
        running -= 1;
        pump();
        refreshFiles();
      });
    }
  }

  function send(job, done) {
    const { file, item, progress, status } = job;
    const data = new FormData();
    data.append("size", String(file.size));
    data.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    job.xhr = xhr;
    const started = performance.now();
    item.dataset.state = "uploading";
    status.textContent = "Uploading…";
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      const pct = Math.min(100, Math.floor((event.loaded / event.total) * 100));
      progress.value = pct;
      status.textContent = "Uploading… " + pct + "% of " + humanSize(file.size);
    });
    xhr.upload.addEventListener("load", () => {
      progress.value = 100;
      status.textContent = "Verifying with the server…";
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 200) {
        const report = JSON.parse(xhr.responseText);
        const seconds = (performance.now() - started) / 1000;
        progress.value = 100;
        finish(item, report.verified ? "verified" : "failed",
          (report.verified ? "Verified" : "Not verified") + ": " + humanSize(report.size) +
          " in " + seconds.toFixed(1) + " s, digest " + report.digest);
        item.dataset.digest = report.digest;
      } else {
        finish(item, "failed", "Failed: " + errorText(xhr.responseText, xhr.status));
      }
      done();
    });
    xhr.addEventListener("error", () => {
      finish(item, "failed", "Failed: the connection to the page broke.");
      done();
    });
    xhr.addEventListener("abort", () => {
      finish(item, "failed", "Cancelled.");
      done();
    });
    xhr.open("POST", "/api/upload");
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.send(data);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.files.length === 0) {
      input.focus();
      return;
    }
    enqueue(Array.from(input.files));
    input.value = "";
  });

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
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length > 0) {
      enqueue(Array.from(event.dataTransfer.files));
    }
  });
  // A file dropped elsewhere on the page must not make the browser navigate to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // ----- the file list -----

  async function refreshFiles() {
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
    const files = JSON.parse(text);
    tbody.replaceChildren();
    for (const file of files) {
      const link = el("a", { href: "/api/file?name=" + encodeURIComponent(file.name), download: file.name, text: "Download" });
      link.setAttribute("aria-label", "Download " + file.name);
      const remove = el("button", { type: "button", class: "danger", text: "Delete" });
      remove.setAttribute("aria-label", "Delete " + file.name);
      remove.addEventListener("click", () => removeFile(file.name));
      const when = new Date(file.modified * 1000);
      tbody.appendChild(el("tr", null, [
        el("td", { class: "name", text: file.name }),
        el("td", { class: "num", text: humanSize(file.size), title: file.size + " bytes" }),
        el("td", null, [el("code", { class: "digest", text: file.digest })]),
        el("td", null, [el("time", { datetime: when.toISOString(), text: when.toLocaleString() })]),
        el("td", { class: "actions" }, [link, remove]),
      ]));
    }
    filesStatus.textContent = files.length === 0
      ? "No files yet."
      : files.length + (files.length === 1 ? " file." : " files.");
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
})();
