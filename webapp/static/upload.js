// The upload form's drag-and-drop: a file dropped anywhere on the drop zone
// becomes the file input's file, so the form submits it as if it were chosen
// (and columns.js reads its header, as for a chosen file).
// Without this script the file input works as it is.
"use strict";

(function () {
  const form = document.getElementById("upload-form");
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("file");
  const chosen = document.getElementById("file-chosen");
  const button = document.getElementById("upload-button");
  const status = document.getElementById("upload-status");
  if (!form || !zone || !input) return;

  function size(bytes) {
    if (bytes < 1024) return bytes + " bytes";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function showChosen() {
    const file = input.files && input.files[0];
    chosen.textContent = file ? "Chosen: " + file.name + " (" + size(file.size) + ")" : "";
  }

  function hasFiles(event) {
    return event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      if (!hasFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "dragend"].forEach(function (name) {
    zone.addEventListener(name, function () {
      zone.classList.remove("dragging");
    });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.classList.remove("dragging");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!files || files.length === 0) return;
    if (files.length > 1) {
      chosen.textContent = "Drop one file at a time.";
      return;
    }
    input.files = files;
    // Setting the files fires no event: tell showChosen and the column picker (columns.js).
    input.dispatchEvent(new Event("change"));
  });
  input.addEventListener("change", showChosen);

  form.addEventListener("submit", function () {
    // The browser shows the batch page once the file is in; until then, say so.
    button.disabled = true;
    status.textContent = "Uploading… large files take a few seconds.";
  });

  // Coming back with the Back button: the page may be restored as it was left.
  window.addEventListener("pageshow", function () {
    button.disabled = false;
    status.textContent = "";
  });

  // A refused upload comes back with the problem at the top: take the reader there. The page
  // answered the form's POST; its address becomes the home page's, so that a reload asks for
  // the form afresh instead of offering to send the file again.
  const problem = document.getElementById("upload-problem");
  if (problem) {
    problem.focus();
    window.history.replaceState(null, "", form.dataset.home);
  }
})();
