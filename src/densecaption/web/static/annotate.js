// The annotation page: DCI's three stages for one photo (standard caption; each mask, leaves first; overall
// description), then a submit screen. Every change is autosaved to the server, which keeps the step too, so
// a reload (or a restarted server) comes back to the same place.
(function () {
  "use strict";
  const root = document.getElementById("app");
  const stem = root.dataset.stem;
  const base = `/task/${encodeURIComponent(stem)}`;
  const api = `/api/task/${encodeURIComponent(stem)}`;
  const TARGET = 750;
  let task = null;
  let state = null;
  let pending = {};
  let timer = null;
  let chain = Promise.resolve();
  const photo = new Image();
  const maskImages = new Map();

  // ------------------------------------------------------------------ small helpers
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === "text") el.textContent = v;
      else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) el.append(c);
    return el;
  }
  function loaded(img) {
    return img.complete && img.naturalWidth ? Promise.resolve(img)
      : new Promise((ok, fail) => { img.addEventListener("load", () => ok(img)); img.addEventListener("error", fail); });
  }
  function maskImage(idx) {
    if (!maskImages.has(idx)) {
      const img = new Image();
      img.src = `${base}/mask/${idx}/fill.png`;
      maskImages.set(idx, img);
    }
    return loaded(maskImages.get(idx));
  }
  function fields(idx) {
    const m = state.masks[String(idx)] || {};
    return { label: m.label || "", caption: m.caption || "", mask_quality: m.mask_quality || 0 };
  }
  function stepDone(f) {
    if (f.mask_quality === 2) return true;
    if (f.mask_quality === 1) return f.label !== "";
    return f.label !== "" && f.caption !== "";
  }
  function withPeriod(t) { return /[.!?]$/.test(t) ? t : t + "."; }
  function totalWords() {
    // DCI's counter (docs/web.md): single-space split of both captions and the good masks' lines
    let text = withPeriod(`${state.short_caption} ${state.extra_caption}`);
    const keys = Object.keys(task.masks).map(Number).sort((a, b) => a - b);
    for (const k of keys) {
      const f = fields(k);
      if (f.mask_quality === 0 && f.label) text += withPeriod(` ${f.label}: ${f.caption}`);
    }
    return text.split(" ").length;
  }
  function labelOf(idx) { return fields(idx).label || `(mask ${idx})`; }

  // ------------------------------------------------------------------ autosave
  function setSaved(text, failed) {
    const el = document.getElementById("saved");
    el.textContent = text;
    el.classList.toggle("failed", !!failed);
  }
  function change(patch, now) {
    for (const [k, v] of Object.entries(patch)) {
      if (k === "masks") pending.masks = Object.assign(pending.masks || {}, v);
      else pending[k] = v;
    }
    setSaved("unsaved changes…");
    clearTimeout(timer);
    if (now) return flush();
    timer = setTimeout(flush, 300);
    return chain;
  }
  function flush() {
    clearTimeout(timer);
    const body = pending;
    pending = {};
    if (!Object.keys(body).length) return chain;
    // one request at a time from this tab, in order; the server serialises tabs and servers
    chain = chain.then(() => fetch(api, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), keepalive: true,
    })).then((r) => {
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      return r.json();
    }).then((reply) => {
      if (!Object.keys(pending).length) setSaved("all changes saved");
      showProgress(reply.progress);
    }).catch((e) => setSaved(`save failed (${e.message}); your text is still here`, true));
    return chain;
  }
  window.addEventListener("pagehide", flush);

  // ------------------------------------------------------------------ progress
  function showProgress(p) {
    const n = task.order.length;
    const done = p ? p.done : task.order.filter((i) => stepDone(fields(i))).length;
    const where = state.step < 0 ? "standard caption" : state.step < n ? `mask ${state.step + 1}/${n}`
      : state.step === n ? "overall description" : "done";
    document.getElementById("photo-progress").textContent =
      `photo ${task.position} of ${task.photos} · ${where} · masks done ${done}/${n}`;
    document.querySelector("#mask-progress > div").style.width = n ? `${(100 * done) / n}%` : "100%";
  }
  function showCounter() {
    document.getElementById("counter").textContent = `Total Words: ${totalWords()} / ${TARGET} (target)`;
  }

  // ------------------------------------------------------------------ drawing
  function overlayOn(canvas, idx, region) {
    // the child's mask in cyan over ``region`` (x0, y0, x1, y1 in photo pixels) of ``canvas``
    return maskImage(idx).then((mask) => {
      const ctx = canvas.getContext("2d");
      const s = mask.naturalWidth / task.width;
      const [x0, y0, x1, y1] = region;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.globalCompositeOperation = "source-over";
      ctx.drawImage(mask, x0 * s, y0 * s, (x1 - x0) * s, (y1 - y0) * s, 0, 0, canvas.width, canvas.height);
      ctx.globalCompositeOperation = "source-in";
      ctx.fillStyle = "cyan";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.globalCompositeOperation = "source-over";
    });
  }
  function clearCanvas(canvas) { canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height); }
  function hoverLabels(indices, canvas, region) {
    return indices.map((i) => h("span", {
      class: "child-label", "data-child": i, text: labelOf(i),
      on: { mouseenter: () => overlayOn(canvas, i, region), mouseleave: () => clearCanvas(canvas) },
    }));
  }
  function drawCrop(canvas, m) {
    // black, the crop at 50 %, the mask's own pixels at full opacity with a white glow
    Promise.all([loaded(photo), maskImage(m.idx)]).then(([img, mask]) => {
      const [x0, y0, x1, y1] = m.crop;
      const ctx = canvas.getContext("2d");
      const W = canvas.width, H = canvas.height, s = mask.naturalWidth / task.width;
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, W, H);
      ctx.globalAlpha = 0.5;
      ctx.drawImage(img, x0, y0, x1 - x0, y1 - y0, 0, 0, W, H);
      ctx.globalAlpha = 1;
      const off = document.createElement("canvas");
      off.width = W;
      off.height = H;
      const o = off.getContext("2d");
      o.drawImage(img, x0, y0, x1 - x0, y1 - y0, 0, 0, W, H);
      o.globalCompositeOperation = "destination-in";
      o.drawImage(mask, x0 * s, y0 * s, (x1 - x0) * s, (y1 - y0) * s, 0, 0, W, H);
      ctx.shadowColor = "#fff";
      ctx.shadowBlur = 14;
      ctx.drawImage(off, 0, 0);
      ctx.shadowBlur = 0;
      canvas.dataset.drawn = "1";
    }).catch(() => { canvas.dataset.drawn = "failed"; });
  }
  function sized(w, h, maxW, maxH) {
    const s = Math.min(maxW / w, maxH / h);
    return [Math.max(1, Math.round(w * s)), Math.max(1, Math.round(h * s))];
  }
  function photoWithOverlay(indices) {
    const [W, H] = sized(task.width, task.height, Math.min(900, window.innerWidth * 0.8), window.innerHeight * 0.6);
    const img = h("img", { src: `${base}/photo`, alt: task.image, id: "whole-photo", width: W, height: H });
    const canvas = h("canvas", { class: "overlay-canvas", width: W, height: H });
    canvas.style.position = "absolute";
    canvas.style.left = "0";
    canvas.style.top = "0";
    canvas.style.opacity = "0.38";
    canvas.style.background = "transparent";
    canvas.style.pointerEvents = "none";
    const stack = h("div", { class: "stack" }, img, canvas);
    const labels = indices.length ? hoverLabels(indices, canvas, [0, 0, task.width, task.height]) : [];
    return [stack, labels];
  }

  // ------------------------------------------------------------------ steps
  function buttons(canNext, extra) {
    return h("div", { class: "buttons" }, ...(extra || []),
      state.step > -1 ? h("button", { id: "prev", type: "button", on: { click: () => go(state.step - 1) } }, "Previous Step") : null,
      h("button", { id: "next", type: "button", class: "primary", disabled: !canNext,
        on: { click: () => go(state.step + 1) } }, "Next Step"));
  }
  function render() {
    const n = task.order.length;
    const box = document.getElementById("step");
    const title = document.getElementById("step-title");
    box.replaceChildren();
    showCounter();
    showProgress();
    if (!task.photo_ok) box.append(h("div", { class: "error-box", text: `photo ${task.image} was not found; ` +
      "start the server with --photos FOLDER" }));
    if (state.step < 0) {
      title.textContent = "Stage 1 of 3: standard caption";
      const area = h("textarea", { id: "short-caption", maxlength: 50000, placeholder: "1-2 sentences (about 20-30 words) about the whole photo" });
      area.value = state.short_caption;
      area.addEventListener("input", () => { state.short_caption = area.value; showCounter(); change({ short_caption: area.value }); });
      box.append(h("div", { class: "task" },
        h("div", { class: "fit" }, h("img", { src: `${base}/photo`, alt: task.image })),
        h("div", { class: "form" }, h("label", { for: "short-caption" }, "Caption"), area, buttons(true))));
      area.focus();
    } else if (state.step < n) {
      renderMask(box, title);
    } else if (state.step === n) {
      title.textContent = "Stage 3 of 3: overall description";
      const [stack, labels] = photoWithOverlay(task.top);
      const area = h("textarea", { id: "extra-caption", maxlength: 50000,
        placeholder: "Describe the whole photo: enough to recreate a near-identical image, its layout, how the parts relate" });
      area.value = state.extra_caption;
      area.addEventListener("input", () => { state.extra_caption = area.value; showCounter(); change({ extra_caption: area.value }); });
      box.append(h("div", { class: "task" }, stack,
        h("div", { class: "form" },
          labels.length ? h("p", {}, "You've noted the previous layers: ", ...labels) : null,
          h("label", { for: "extra-caption" }, "Overall description"), area, buttons(true))));
      area.focus();
    } else {
      title.textContent = "Done";
      const result = h("div", { id: "result" });
      const finish = h("button", { id: "finish", type: "button", class: "primary", on: { click: () => submit(result) } },
        task.finished ? "Save record again" : "Save record");
      box.append(h("div", { class: "panel" },
        h("p", {}, "You are done with this image. Save it to write the record; you can still go back and change anything."),
        h("div", { class: "buttons" },
          h("button", { id: "prev", type: "button", on: { click: () => go(state.step - 1) } }, "Previous Step"), finish),
        result));
    }
  }
  function renderMask(box, title) {
    const n = task.order.length;
    const idx = task.order[state.step];
    const m = task.masks[String(idx)];
    const f = fields(idx);
    title.textContent = `Stage 2 of 3: Current Mask Region (highlighted). Current Mask: (${state.step + 1}/${n})`;
    const [W, H] = sized(m.crop[2] - m.crop[0], m.crop[3] - m.crop[1], 560, 420);
    const crop = h("canvas", { id: "crop", width: W, height: H });
    const over = h("canvas", { id: "crop-overlay", width: W, height: H });
    over.style.position = "absolute";
    over.style.left = "0";
    over.style.top = "0";
    over.style.opacity = "0.38";
    over.style.background = "transparent";
    over.style.pointerEvents = "none";
    drawCrop(crop, m);
    const rect = h("div", { class: "rect", id: "locator-rect" });
    rect.style.left = `${(100 * m.crop[0]) / task.width}%`;
    rect.style.top = `${(100 * m.crop[1]) / task.height}%`;
    rect.style.width = `${(100 * (m.crop[2] - m.crop[0])) / task.width}%`;
    rect.style.height = `${(100 * (m.crop[3] - m.crop[1])) / task.height}%`;
    const label = h("input", { id: "label", type: "text", maxlength: 300, placeholder: "a few words naming the region",
      disabled: f.mask_quality === 2 });
    const caption = h("textarea", { id: "caption", maxlength: 10000, disabled: f.mask_quality !== 0,
      placeholder: "Describe only the highlighted region; don't repeat what its parts said, describe their layout" });
    label.value = f.label;
    caption.value = f.caption;
    const save = (q) => {
      const next = { label: label.value, caption: caption.value, mask_quality: q === undefined ? fields(idx).mask_quality : q };
      state.masks[String(idx)] = next;
      change({ masks: { [String(idx)]: next } });
      showCounter();
      document.getElementById("next").disabled = !stepDone(next);
      return next;
    };
    label.addEventListener("input", () => save());
    caption.addEventListener("input", () => save());
    const toggle = (q) => { save(fields(idx).mask_quality === q ? 0 : q); flush(); renderMask(box, title); };
    const low = h("button", { id: "low-quality", type: "button", class: f.mask_quality === 1 ? "on" : null,
      on: { click: () => toggle(1) } }, "Low Quality");
    const bad = h("button", { id: "mark-bad", type: "button", class: f.mask_quality === 2 ? "on" : null,
      on: { click: () => toggle(2) } }, "Mark Bad");
    const children = m.children.length
      ? h("p", {}, "This mask is comprised of prior layers: ", ...hoverLabels(m.children, over, m.crop),
        h("span", { class: "muted small" }, "(hover text to highlight)")) : null;
    box.replaceChildren(h("div", { class: "task" },
      h("div", { class: "views" },
        h("div", {}, h("div", { class: "muted small" }, "Current Mask Region (highlighted)"),
          h("div", { class: "stack" }, crop, over)),
        h("div", {}, h("div", { class: "muted small" }, "Location in image:"),
          h("div", { class: "locator" }, h("img", { src: `${base}/photo`, alt: task.image }), rect))),
      h("div", { class: "form" }, children,
        h("label", { for: "label" }, "Label"), label,
        h("label", { for: "caption" }, "Description"), caption,
        buttons(stepDone(f), [low, bad]))));
    (f.mask_quality === 2 ? document.getElementById("next") : label).focus();
  }
  function go(step) {
    const n = task.order.length;
    if (step < -1 || step > n + 1) return;
    if (state.step >= 0 && state.step < n && step > state.step && !stepDone(fields(task.order[state.step]))) return;
    state.step = step;
    change({ step }, true);
    render();
  }
  function submit(result) {
    result.replaceChildren(h("p", { class: "muted" }, "Saving…"));
    flush().then(() => fetch(`${api}/finish`, { method: "POST" })).then((r) => r.json().then((j) => [r, j]))
      .then(([r, j]) => {
        if (!r.ok) throw new Error(j.detail || `HTTP ${r.status}`);
        task.finished = true;
        showProgress(j.progress);
        result.replaceChildren(h("p", { id: "done" }, `Saved as ${j.file}. `,
          task.next ? h("a", { id: "next-photo", href: `/task/${encodeURIComponent(task.next)}` }, "Next photo →")
            : h("a", { href: "/" }, "All photos")));
      })
      .catch((e) => result.replaceChildren(h("p", { class: "error", id: "finish-error", text: String(e.message) })));
  }

  // ------------------------------------------------------------------ keys: Enter next, Shift+Enter back,
  // Esc low quality, Shift+Esc bad (mask steps only)
  document.addEventListener("keydown", (e) => {
    if (!task) return;
    const n = task.order.length;
    if (e.key === "Enter" && !e.ctrlKey && !e.altKey && !e.metaKey) {
      if (e.target.tagName === "BUTTON") return;
      e.preventDefault();
      if (e.shiftKey) go(state.step - 1);
      else if (state.step <= n) {
        const next = document.getElementById("next");
        if (next && !next.disabled) go(state.step + 1);
      }
    } else if (e.key === "Escape" && state.step >= 0 && state.step < n) {
      e.preventDefault();
      document.getElementById(e.shiftKey ? "mark-bad" : "low-quality").click();
    }
  });

  fetch(api).then((r) => {
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r.json();
  }).then((t) => {
    task = t;
    state = t.state;
    state.masks = state.masks || {};
    state.step = Math.max(-1, Math.min(state.step, t.order.length + 1));
    photo.src = `${base}/photo`;
    setSaved(t.state.step > -1 || t.state.short_caption ? "resumed where you stopped" : "");
    render();
  }).catch((e) => {
    document.getElementById("step-title").textContent = `Cannot load this photo: ${e.message}`;
  });
})();
