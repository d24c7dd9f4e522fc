// The record page: one outline and one fill layer per mask over the photo, coloured with CSS masks; every
// element with data-mask="<idx>" lights up its mask (hover) or keeps it lit (click).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("record-data").textContent);
  const stage = document.getElementById("stage");
  const byIdx = new Map(data.masks.map((m) => [String(m.idx), m]));
  let pinned = null;

  for (const el of document.querySelectorAll("[data-colour]")) el.style.background = el.dataset.colour;

  function layer(m, kind) {
    const div = document.createElement("div");
    const url = `url("/image/${encodeURIComponent(data.id)}/mask/${m.idx}/${kind}.png")`;
    div.className = `layer ${kind} q${m.quality}`;
    div.id = `${kind}-${m.idx}`;
    div.dataset.mask = m.idx;
    div.style.background = m.colour;
    div.style.webkitMaskImage = url;
    div.style.maskImage = url;
    return div;
  }

  // deeper masks drawn last, so a child's outline stays on top of its parent's
  const order = [...data.masks].sort((a, b) => a.depth - b.depth);
  if (stage && document.getElementById("photo")) {
    for (const m of order) stage.appendChild(layer(m, "fill"));
    for (const m of order) stage.appendChild(layer(m, "outline"));
    const tag = document.createElement("div");
    tag.className = "tag";
    tag.id = "tag";
    stage.appendChild(tag);
  }

  function light(idx, on) {
    for (const el of document.querySelectorAll(`[data-mask="${idx}"]`)) el.classList.toggle("hl", on);
    if (stage) stage.classList.toggle("focus", on || pinned !== null);
    const tag = document.getElementById("tag");
    const m = byIdx.get(String(idx));
    if (!tag || !m) return;
    if (on && data.width && data.height) {
      // the one label drawn on the photo: the lit mask's, at its box's top-left corner
      tag.textContent = `${m.idx}: ${m.label || "(no label)"}`;
      tag.style.left = `${(100 * m.box[0]) / data.width}%`;
      tag.style.top = `${(100 * m.box[1]) / data.height}%`;
      tag.style.borderColor = m.colour;
      tag.classList.add("shown");
    } else {
      tag.classList.remove("shown");
    }
  }

  document.addEventListener("mouseover", (e) => {
    const el = e.target.closest("[data-mask]");
    if (el && !el.classList.contains("layer") && pinned === null) light(el.dataset.mask, true);
  });
  document.addEventListener("mouseout", (e) => {
    const el = e.target.closest("[data-mask]");
    if (el && !el.classList.contains("layer") && pinned === null) light(el.dataset.mask, false);
  });
  document.addEventListener("click", (e) => {
    const el = e.target.closest("[data-mask]");
    if (!el || el.classList.contains("layer")) return;
    const idx = el.dataset.mask;
    if (pinned !== null) light(pinned, false);
    pinned = pinned === idx ? null : idx;
    if (pinned !== null) light(pinned, true);
  });
  const toggle = document.getElementById("toggle-outlines");
  if (toggle && stage) {
    toggle.addEventListener("change", () => stage.classList.toggle("no-outlines", !toggle.checked));
  }
})();
