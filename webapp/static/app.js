// Progressive enhancement: drag-and-drop, a preview, and submitting without a page reload.
// Without JavaScript the plain form POST does the same job.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload");
  const input = document.getElementById("image");
  const drop = document.getElementById("drop");
  const preview = document.getElementById("preview");
  const dropText = document.getElementById("drop-text");
  if (!form || !input || !drop) return;

  const showPreview = () => {
    const file = input.files && input.files[0];
    if (!file) return;
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    dropText.textContent = file.name;
  };

  input.addEventListener("change", showPreview);
  ["dragenter", "dragover"].forEach((type) =>
    drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((type) =>
    drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (event) => {
    if (!event.dataTransfer.files.length) return;
    input.files = event.dataTransfer.files;
    showPreview();
  });

  // The upload form and each example's one-click form: post, then show the new result.
  const submitInPlace = (target) => target.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = target.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch(target.action, { method: "POST", body: new FormData(target) });
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("result");
      if (fresh) document.getElementById("result").replaceWith(fresh);
      if (target !== form && fresh) fresh.scrollIntoView({ block: "start" });
    } catch (err) {
      document.getElementById("result").textContent = "Upload failed: " + err;
    } finally {
      button.disabled = false;
    }
  });
  submitInPlace(form);
  document.querySelectorAll("#examples form").forEach(submitInPlace);
});
