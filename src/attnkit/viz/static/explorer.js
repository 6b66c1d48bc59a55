/* attnkit attention explorer: hand-written, no framework, no network.
 * attnkitExplorer(root, doc) fills `root` with the explorer of `doc` (see attnkit/viz/explorer.py).
 * Everything lives in this closure and under `root`: several explorers can share one page.
 * Views (head, model, statistics, generation) are SVG, so each exports as SVG and PNG. */
var attnkitExplorer = (function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var QUANT = 65535;
  var WINDOW = 120;          // head view: tokens shown at once beyond this length
  var LINE_FOCUS = 0.005;    // head view: smallest weight drawn for a focused token
  var LINE_ALL = 0.05;       // ... and with no token focused
  var CELLS_AS_RECTS = 9216; // full-size heatmap: one <rect> per cell up to 96 x 96
  var FONT = "12px system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
  var VIRIDIS = [[68, 1, 84], [71, 45, 123], [59, 82, 139], [44, 114, 142], [33, 145, 140],
                 [40, 174, 128], [94, 201, 98], [173, 220, 48], [253, 231, 37]];
  var MASKED = "#d4d4d4";

  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }
  function label(t) {
    var s = String(t).replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
    if (s.trim() === "") s = s.length ? "\u2423".repeat(Math.min(s.length, 3)) : "\u2205";
    return s.length > 18 ? s.slice(0, 17) + "\u2026" : s;
  }
  function viridis(x) {
    x = Math.max(0, Math.min(1, x)) * (VIRIDIS.length - 1);
    var i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return [0, 1, 2].map(function (c) { return Math.round(a[c] + f * (b[c] - a[c])); });
  }
  function tone(x, sqrt) { return sqrt ? Math.sqrt(Math.max(0, x)) : x; } // colour of a weight / max
  function rgb(c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }
  function headColor(h, H) { return "hsl(" + Math.round((h * 360) / H) + ",70%,45%)"; }
  function fmt(x, d) { return x === null || x === undefined ? "\u2013" : Number(x).toFixed(d); }
  function bytes(b64) {
    var s = atob(b64), out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* ------------------------------------------------------------------ data */
  function Section(raw) {
    this.raw = raw;
    this.Lq = raw.q_tokens.length; this.Lk = raw.k_tokens.length; this.H = raw.heads; this.N = raw.layers.length;
    this.k = raw.k; this.dense = raw.mode === "dense";
    this.values = new Uint16Array(bytes(raw.values).buffer);
    this.index = raw.index ? new Uint16Array(bytes(raw.index).buffer) : null;
    this.offset = this.Lk - this.Lq; // query i sits at key position i + offset (bottom-right alignment)
  }
  Section.prototype.masked = function (i, j) { return this.raw.causal && j > i + this.offset; };
  Section.prototype.base = function (l, h, i) { return ((l * this.H + h) * this.Lq + i) * this.k; };
  /* the kept entries of query row i: [[j, w], ...] with w > 0 */
  Section.prototype.row = function (l, h, i) {
    var out = [], b = this.base(l, h, i), j, v;
    for (var n = 0; n < this.k; n++) {
      v = this.values[b + n];
      if (v === 0) continue;
      j = this.dense ? n : this.index[b + n];
      out.push([j, v / QUANT]);
    }
    return out;
  };
  Section.prototype.weight = function (l, h, i, j) {
    var b = this.base(l, h, i);
    if (this.dense) return this.values[b + j] / QUANT;
    for (var n = 0; n < this.k; n++) if (this.index[b + n] === j) return this.values[b + n] / QUANT;
    return 0;
  };
  Section.prototype.max = function (l, h) {
    var b = this.base(l, h, 0), m = 0;
    for (var n = 0; n < this.Lq * this.k; n++) if (this.values[b + n] > m) m = this.values[b + n];
    return m / QUANT;
  };
  /* a (rows x cols) raster of one head, max-pooled, as a PNG data URL; masked bins grey */
  Section.prototype.raster = function (l, h, rows, cols, scale, sqrt) {
    var cv = document.createElement("canvas"), ctx, img, pool = new Float32Array(rows * cols), i, e, r, c, p;
    cv.width = cols; cv.height = rows; ctx = cv.getContext("2d"); img = ctx.createImageData(cols, rows);
    for (i = 0; i < this.Lq; i++) {
      r = Math.floor((i * rows) / this.Lq);
      e = this.row(l, h, i);
      for (var n = 0; n < e.length; n++) {
        p = r * cols + Math.floor((e[n][0] * cols) / this.Lk);
        if (e[n][1] > pool[p]) pool[p] = e[n][1];
      }
    }
    for (r = 0; r < rows; r++) for (c = 0; c < cols; c++) {
      var iLast = Math.min(this.Lq - 1, Math.floor(((r + 1) * this.Lq - 1) / rows));
      var jFirst = Math.ceil((c * this.Lk) / cols);
      var color = this.masked(iLast, jFirst) ? [212, 212, 212] : viridis(tone(pool[r * cols + c] / scale, sqrt));
      p = 4 * (r * cols + c);
      img.data[p] = color[0]; img.data[p + 1] = color[1]; img.data[p + 2] = color[2]; img.data[p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    return cv.toDataURL("image/png");
  };

  /* ------------------------------------------------------------------ page */
  function Explorer(root, doc) {
    this.root = root; this.doc = doc;
    this.sections = doc.sections.map(function (s) { return new Section(s); });
    this.st = {sec: 0, layer: 0, heads: null, view: "head", lock: null, hover: null, zoom: null, win: 0, step: 0,
               sort: {key: "layer", dir: 1}, sqrt: false};
    this.thumbs = {};
    this.build();
    this.setSection(0);
  }
  var P = Explorer.prototype;
  P.q = function (sel) { return this.root.querySelector(sel); };
  P.sec = function () { return this.sections[this.st.sec]; };

  P.build = function () {
    var self = this, root = this.root;
    root.innerHTML = "";
    root.appendChild(el("div", {"class": "ax-title"}, this.doc.title));
    if (this.doc.note) root.appendChild(el("div", {"class": "ax-note"}, this.doc.note));
    var bar = el("div", {"class": "ax-toolbar"});
    if (this.sections.length > 1) {
      var group = el("span", {"class": "ax-group ax-sections"});
      this.sections.forEach(function (s, n) {
        var b = el("button", {"class": "ax-sec", "data-sec": n, type: "button"}, s.raw.label);
        b.addEventListener("click", function () { self.setSection(n); });
        group.appendChild(b);
      });
      bar.appendChild(group);
    }
    var views = el("span", {"class": "ax-group ax-views"});
    [["head", "head view"], ["model", "model view"], ["stats", "statistics"], ["gen", "generation"]].forEach(
      function (v) {
        var b = el("button", {"class": "ax-tab", "data-view": v[0], type: "button"}, v[1]);
        b.addEventListener("click", function () { self.st.view = v[0]; self.st.zoom = null; self.render(); });
        views.appendChild(b);
      });
    bar.appendChild(views);
    var layerBox = el("label", {"class": "ax-group"}, "layer ");
    this.layerSelect = el("select", {"class": "ax-layer"});
    this.layerSelect.addEventListener("change", function () {
      self.st.layer = Number(self.layerSelect.value); self.st.zoom = null; self.render();
    });
    layerBox.appendChild(this.layerSelect);
    bar.appendChild(layerBox);
    this.headBox = el("span", {"class": "ax-group ax-heads", title: "click: show/hide a head; double-click: only it"});
    bar.appendChild(this.headBox);
    var exp = el("span", {"class": "ax-group ax-export"});
    ["svg", "png"].forEach(function (kind) {
      var b = el("button", {"class": "ax-export-" + kind, type: "button"}, "\u2913 " + kind.toUpperCase());
      b.addEventListener("click", function () { self.exportView(kind); });
      exp.appendChild(b);
    });
    bar.appendChild(exp);
    root.appendChild(bar);
    root.appendChild(el("div", {"class": "ax-info"}));
    this.controls = el("div", {"class": "ax-controls"});
    root.appendChild(this.controls);
    this.view = el("div", {"class": "ax-view"});
    root.appendChild(this.view);
    root.appendChild(el("div", {"class": "ax-readout"}, "\u00a0"));
    root.setAttribute("tabindex", "0"); // arrow keys step through the generation view
    root.addEventListener("keydown", function (ev) {
      if (self.st.view !== "gen" || (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight")) return;
      ev.preventDefault();
      self.setStep(self.st.step + (ev.key === "ArrowRight" ? 1 : -1));
    });
  };

  P.setSection = function (n) {
    var s = this.sections[n], self = this, H = s.H;
    this.st.sec = n; this.st.layer = 0; this.st.lock = null; this.st.hover = null; this.st.zoom = null;
    this.st.win = 0; this.st.step = 0;
    this.st.heads = [];
    for (var h = 0; h < H; h++) this.st.heads.push(true);
    if (this.st.view === "gen" && s.raw.prompt_length === null) this.st.view = "head";
    this.layerSelect.innerHTML = "";
    s.raw.layers.forEach(function (number, li) {
      self.layerSelect.appendChild(el("option", {value: li}, String(number)));
    });
    this.headBox.innerHTML = "";
    for (h = 0; h < H; h++) (function (h) {
      var b = el("button", {"class": "ax-head on", "data-head": h, type: "button", title: "head " + h},
                 String(h));
      b.style.background = headColor(h, H);
      b.addEventListener("click", function () { self.st.heads[h] = !self.st.heads[h]; self.render(); });
      b.addEventListener("dblclick", function () {
        self.st.heads = self.st.heads.map(function (_, g) { return g === h; }); self.render();
      });
      self.headBox.appendChild(b);
    })(h);
    this.render();
  };

  P.selectedHeads = function () {
    var out = [];
    this.st.heads.forEach(function (on, h) { if (on) out.push(h); });
    return out;
  };

  P.render = function () {
    var s = this.sec(), st = this.st;
    this.root.querySelectorAll(".ax-sec").forEach(function (b) {
      b.classList.toggle("on", Number(b.getAttribute("data-sec")) === st.sec);
    });
    this.root.querySelectorAll(".ax-tab").forEach(function (b) {
      var v = b.getAttribute("data-view");
      b.classList.toggle("on", v === st.view);
      b.style.display = v === "gen" && s.raw.prompt_length === null ? "none" : "";
    });
    this.root.querySelectorAll(".ax-head").forEach(function (b) {
      b.classList.toggle("on", st.heads[Number(b.getAttribute("data-head"))]);
    });
    this.layerSelect.value = String(st.layer);
    var info = s.raw.label + ": " + s.Lq + " queries \u00d7 " + s.Lk + " keys, " + s.N + " layers \u00d7 " + s.H +
      " heads. ";
    info += s.dense ? "Every weight is shown (16-bit)." :
      "Top-k: each query keeps its " + s.k + " largest weights (on average " + fmt(100 * s.raw.coverage, 1) +
      "% of its attention); the rest count as 0.";
    if (s.raw.causal) info += " Causal: grey = masked (a token sees only itself and earlier tokens).";
    this.q(".ax-info").textContent = info;
    this.controls.innerHTML = "";
    this.view.innerHTML = "";
    this.readout("\u00a0");
    if (st.view === "head") this.renderHead();
    else if (st.view === "model") { if (st.zoom) this.renderZoom(); else this.renderGrid(); }
    else if (st.view === "stats") this.renderStats();
    else this.renderGen();
  };
  P.readout = function (text) { this.q(".ax-readout").textContent = text; };

  function svgOpen(w, h, cls) {
    return '<svg xmlns="' + NS + '" class="' + cls + '" width="' + w + '" height="' + h + '" viewBox="0 0 ' + w +
      " " + h + '" font-family="system-ui, Helvetica, Arial, sans-serif" font-size="12">' +
      '<rect class="ax-bg" width="100%" height="100%" fill="#ffffff"/>';
  }

  /* ------------------------------------------------------------------ head view */
  P.windowRange = function (L) {
    var a = Math.max(0, Math.min(this.st.win, L - WINDOW));
    return [a, Math.min(L, a + WINDOW)];
  };
  P.renderHead = function () {
    var s = this.sec(), self = this, n = Math.max(s.Lq, s.Lk);
    this.windowNote = null;
    if (n > WINDOW) {
      var box = el("label", {}, "window start ");
      var range = el("input", {type: "range", min: 0, max: n - WINDOW, value: this.st.win, "class": "ax-window"});
      range.addEventListener("input", function () { self.st.win = Number(range.value); self.drawHead(); });
      box.appendChild(range);
      this.controls.appendChild(box);
      this.windowNote = el("span", {"class": "ax-window-note"});
      this.controls.appendChild(this.windowNote);
    }
    this.drawHead();
  };
  P.drawHead = function () {
    var s = this.sec(), self = this, n = Math.max(s.Lq, s.Lk);
    if (this.windowNote) {
      var qr = this.windowRange(s.Lq), kr = this.windowRange(s.Lk);
      this.windowNote.textContent = " windowed: queries " + qr[0] + "\u2013" + (qr[1] - 1) + ", keys " + kr[0] +
        "\u2013" + (kr[1] - 1) + " of " + n + " tokens (at most " + WINDOW + " at once); lines to tokens outside " +
        "the window are not drawn";
    }
    var q = this.windowRange(s.Lq), k = this.windowRange(s.Lk), rowH = 20, top = 40, xl = 220, xr = 480;
    var height = top + Math.max(q[1] - q[0], k[1] - k[0]) * rowH + 10, parts = [svgOpen(720, height, "ax-headview")];
    parts.push('<text x="' + xl + '" y="16" text-anchor="end" font-weight="bold">' + esc(s.raw.q_axis) + "</text>");
    parts.push('<text x="' + xr + '" y="16" font-weight="bold">' + esc(s.raw.k_axis) + "</text>");
    parts.push('<g class="ax-lines"></g><g class="ax-toks">');
    [["q", q, s.raw.q_tokens, xl, "end"], ["k", k, s.raw.k_tokens, xr, "start"]].forEach(function (c) {
      for (var i = c[1][0]; i < c[1][1]; i++) {
        var y = top + (i - c[1][0]) * rowH;
        parts.push('<g class="ax-tok" data-side="' + c[0] + '" data-i="' + i + '"><rect x="' +
          (c[0] === "q" ? c[3] - 150 : c[3] - 4) + '" y="' + (y - 14) + '" width="154" height="' + (rowH - 2) +
          '" rx="3" fill="#1f77b4" fill-opacity="0"/><text x="' + c[3] + '" y="' + y + '" text-anchor="' + c[4] +
          '">' + esc(label(c[2][i])) + "</text></g>");
      }
    });
    parts.push("</g></svg>");
    this.view.innerHTML = parts.join("");
    this.geom = {q: q, k: k, rowH: rowH, top: top, xl: xl, xr: xr};
    var svg = this.view.querySelector("svg");
    svg.addEventListener("mouseover", function (ev) {
      var t = ev.target.closest(".ax-tok");
      if (!t) return;
      var f = {side: t.getAttribute("data-side"), i: Number(t.getAttribute("data-i"))};
      if (self.st.hover && self.st.hover.side === f.side && self.st.hover.i === f.i) return;
      self.st.hover = f; self.drawLines();
    });
    svg.addEventListener("mouseleave", function () { self.st.hover = null; self.drawLines(); });
    svg.addEventListener("click", function (ev) {
      var t = ev.target.closest(".ax-tok");
      if (!t) return;
      var f = {side: t.getAttribute("data-side"), i: Number(t.getAttribute("data-i"))}, L = self.st.lock;
      self.st.lock = L && L.side === f.side && L.i === f.i ? null : f;
      self.drawLines();
    });
    this.drawLines();
  };
  P.drawLines = function () {
    var s = this.sec(), g = this.geom, st = this.st, l = st.layer, heads = this.selectedHeads();
    var focus = st.lock || st.hover, parts = [], weightOf = {}, outside = 0;
    function y(side, i) { return g.top + (i - g[side][0]) * g.rowH - 4; }
    function line(h, i, j, w) {
      parts.push('<line class="ax-line" x1="' + (g.xl + 6) + '" y1="' + y("q", i) + '" x2="' + (g.xr - 8) +
        '" y2="' + y("k", j) + '" stroke="' + headColor(h, s.H) + '" stroke-width="2" stroke-opacity="' +
        Math.min(1, w).toFixed(4) + '" data-h="' + h + '" data-q="' + i + '" data-k="' + j + '" data-w="' +
        w.toFixed(4) + '"/>');
    }
    heads.forEach(function (h) {
      var i, e, n;
      if (!focus) {
        for (i = g.q[0]; i < g.q[1]; i++) {
          e = s.row(l, h, i);
          for (n = 0; n < e.length; n++) if (e[n][1] >= LINE_ALL && e[n][0] >= g.k[0] && e[n][0] < g.k[1])
            line(h, i, e[n][0], e[n][1]);
        }
      } else if (focus.side === "q") {
        e = s.row(l, h, focus.i);
        for (n = 0; n < e.length; n++) {
          var j = e[n][0], w = e[n][1];
          if (j < g.k[0] || j >= g.k[1]) { outside = Math.max(outside, w); continue; }
          weightOf[j] = Math.max(weightOf[j] || 0, w);
          if (w >= LINE_FOCUS) line(h, focus.i, j, w);
        }
      } else {
        for (i = g.q[0]; i < g.q[1]; i++) {
          var v = s.weight(l, h, i, focus.i);
          weightOf[i] = Math.max(weightOf[i] || 0, v);
          if (v >= LINE_FOCUS) line(h, i, focus.i, v);
        }
      }
    });
    this.view.querySelector(".ax-lines").innerHTML = parts.join("");
    var other = focus ? (focus.side === "q" ? "k" : "q") : null;
    this.view.querySelectorAll(".ax-tok").forEach(function (t) {
      var side = t.getAttribute("data-side"), i = Number(t.getAttribute("data-i")), a = 0, r = t.firstChild;
      if (focus && side === focus.side && i === focus.i) a = st.lock ? 0.35 : 0.2;
      else if (side === other) a = 0.6 * (weightOf[i] || 0);
      r.setAttribute("fill-opacity", a.toFixed(3));
      t.classList.toggle("locked", !!(st.lock && side === st.lock.side && i === st.lock.i));
    });
    if (!focus) {
      this.readout("Hover or click a token: a query (left) shows what it attends to, a key (right) what attends " +
        "to it. Lines: weight \u2265 " + LINE_ALL + " (no token focused), \u2265 " + LINE_FOCUS + " (focused); " +
        "opacity = weight, colour = head.");
      return;
    }
    var tok = focus.side === "q" ? s.raw.q_tokens[focus.i] : s.raw.k_tokens[focus.i];
    var verb = focus.side === "q" ? " attends to" : " is attended by";
    var best = Object.keys(weightOf).map(Number).sort(function (a, b) { return weightOf[b] - weightOf[a]; })
      .slice(0, 5).map(function (j) {
        return "\u00ab" + label((other === "k" ? s.raw.k_tokens : s.raw.q_tokens)[j]) + "\u00bb " +
          fmt(weightOf[j], 3);
      });
    this.readout((st.lock ? "locked: " : "") + "\u00ab" + label(tok) + "\u00bb (" + focus.i + ")" + verb +
      " (max over shown heads): " + best.join(", ") + (outside > 0 ? "; largest weight outside the window " +
      fmt(outside, 3) : ""));
  };

  /* ------------------------------------------------------------------ model view */
  P.thumb = function (l, h, size) {
    var s = this.sec(), key = this.st.sec + "/" + l + "/" + h + "/" + size + "/" + this.st.sqrt;
    if (!this.thumbs[key]) {
      this.thumbs[key] = s.raster(l, h, Math.min(size, s.Lq), Math.min(size, s.Lk), Math.max(s.max(l, h), 1e-9),
                                  this.st.sqrt);
    }
    return this.thumbs[key];
  };
  P.scaleControl = function () {
    var self = this, box = el("label", {}, "colour "), pick = el("select", {"class": "ax-scale"});
    pick.appendChild(el("option", {value: "linear"}, "linear in the weight"));
    pick.appendChild(el("option", {value: "sqrt"}, "square root (shows small weights)"));
    pick.value = this.st.sqrt ? "sqrt" : "linear";
    pick.addEventListener("change", function () { self.st.sqrt = pick.value === "sqrt"; self.render(); });
    box.appendChild(pick);
    this.controls.appendChild(box);
  };
  P.renderGrid = function () {
    this.scaleControl();
    var s = this.sec(), self = this, ts = Math.max(24, Math.min(72, Math.floor(880 / s.H) - 8)), gap = 8;
    var left = 64, top = 30, width = left + s.H * (ts + gap), height = top + s.N * (ts + gap) + 4;
    var parts = [svgOpen(width, height, "ax-grid")];
    for (var h = 0; h < s.H; h++) {
      parts.push('<text x="' + (left + h * (ts + gap) + ts / 2) + '" y="20" text-anchor="middle" fill="' +
        headColor(h, s.H) + '" font-weight="bold">head ' + h + "</text>");
    }
    for (var l = 0; l < s.N; l++) {
      var y = top + l * (ts + gap);
      parts.push('<text x="' + (left - 8) + '" y="' + (y + ts / 2 + 4) + '" text-anchor="end">layer ' +
        s.raw.layers[l] + "</text>");
      for (h = 0; h < s.H; h++) {
        var x = left + h * (ts + gap);
        parts.push('<g class="ax-thumb" data-layer="' + l + '" data-head="' + h + '"><image x="' + x + '" y="' + y +
          '" width="' + ts + '" height="' + ts + '" preserveAspectRatio="none" style="image-rendering:pixelated" ' +
          'href="' + this.thumb(l, h, ts) + '"/><rect x="' + (x - 1.5) + '" y="' + (y - 1.5) + '" width="' + (ts + 3) +
          '" height="' + (ts + 3) + '" fill="none" stroke="' + headColor(h, s.H) + '" stroke-width="1.5" ' +
          'stroke-opacity="' + (this.st.heads[h] ? 0.9 : 0.15) + '"/></g>');
      }
    }
    parts.push("</svg>");
    this.view.innerHTML = parts.join("");
    this.readout("Layers \u00d7 heads; each heatmap coloured from 0 to its own maximum (rows: queries, columns: " +
      "keys" + (s.Lq > ts || s.Lk > ts ? "; each pixel the largest weight of its block" : "") +
      "). Click one to open it full size.");
    var svg = this.view.querySelector("svg");
    svg.addEventListener("mouseover", function (ev) {
      var t = ev.target.closest(".ax-thumb");
      if (!t) return;
      var l = Number(t.getAttribute("data-layer")), h = Number(t.getAttribute("data-head"));
      self.readout("layer " + s.raw.layers[l] + ", head " + h + ": mean distance " + fmt(s.raw.mean_distance[l][h], 2) +
        " tokens, entropy " + fmt(s.raw.entropy[l][h], 3) + " nats (click to open)");
    });
    svg.addEventListener("click", function (ev) {
      var t = ev.target.closest(".ax-thumb");
      if (!t) return;
      self.openZoom(Number(t.getAttribute("data-layer")), Number(t.getAttribute("data-head")));
    });
  };
  P.openZoom = function (l, h) {
    this.st.view = "model"; this.st.layer = l; this.st.zoom = {layer: l, head: h}; this.render();
  };
  P.renderZoom = function () {
    var s = this.sec(), self = this, z = this.st.zoom, l = z.layer, h = z.head, n = Math.max(s.Lq, s.Lk);
    var back = el("button", {"class": "ax-back", type: "button"}, "\u2190 all heads");
    back.addEventListener("click", function () { self.st.zoom = null; self.render(); });
    this.controls.appendChild(back);
    this.scaleControl();
    var cell = Math.max(1, Math.min(28, Math.floor(560 / n))), labels = cell >= 9, vmax = Math.max(s.max(l, h), 1e-9);
    var sq = this.st.sqrt, dw = Math.min(s.Lk * cell, 640), dh = Math.min(s.Lq * cell, 640); // drawn size, pixels
    var left = labels ? 130 : 50, top = labels ? 110 : 62, W = left + dw + 80, Hh = top + dh + 12;
    var parts = [svgOpen(W, Hh, "ax-zoom")], i, j;
    parts.push('<text x="4" y="16" font-weight="bold">layer ' + s.raw.layers[l] + ", head " + h +
      " \u2014 mean distance " + fmt(s.raw.mean_distance[l][h], 2) + ", entropy " + fmt(s.raw.entropy[l][h], 3) +
      "</text>");
    parts.push('<text x="4" y="32" fill="#555">rows: ' + esc(s.raw.q_axis) + "; columns: " + esc(s.raw.k_axis) +
      "</text>");
    if (labels) {
      for (j = 0; j < s.Lk; j++) {
        var cx = left + j * cell + cell / 2;
        parts.push('<text x="' + cx + '" y="' + (top - 4) + '" transform="rotate(-60 ' + cx + " " + (top - 4) +
          ')" font-size="10">' + esc(label(s.raw.k_tokens[j])) + "</text>");
      }
      for (i = 0; i < s.Lq; i++) {
        parts.push('<text x="' + (left - 4) + '" y="' + (top + i * cell + cell / 2 + 3) + '" text-anchor="end" ' +
          'font-size="10">' + esc(label(s.raw.q_tokens[i])) + "</text>");
      }
    }
    if (s.Lq * s.Lk <= CELLS_AS_RECTS && cell >= 4) {
      parts.push('<g class="ax-cells">');
      for (i = 0; i < s.Lq; i++) for (j = 0; j < s.Lk; j++) {
        var w = s.weight(l, h, i, j), m = s.masked(i, j);
        parts.push('<rect class="ax-cell" x="' + (left + j * cell) + '" y="' + (top + i * cell) + '" width="' + cell +
          '" height="' + cell + '" fill="' + (m ? MASKED : rgb(viridis(tone(w / vmax, sq)))) + '" data-q="' + i + '" data-k="' +
          j + '" data-w="' + w.toFixed(5) + '"' + (m ? ' data-masked="1"' : "") + "/>");
      }
      parts.push("</g>");
    } else {
      parts.push('<image class="ax-raster" x="' + left + '" y="' + top + '" width="' + dw + '" height="' + dh +
        '" preserveAspectRatio="none" style="image-rendering:pixelated" href="' +
        s.raster(l, h, Math.min(s.Lq, dh), Math.min(s.Lk, dw), vmax, sq) + '"/>');
      if (dw < s.Lk || dh < s.Lq) {
        parts.push('<text x="' + left + '" y="' + (top - 6) + '" fill="#555">each pixel: the largest of ' +
          fmt(s.Lq / dh, 1) + " \u00d7 " + fmt(s.Lk / dw, 1) + " weights; hover reads the weight under the cursor" +
          "</text>");
      }
    }
    var bx = left + dw + 16, bh = Math.max(60, Math.min(240, dh));
    for (var t = 0; t < 32; t++) {
      parts.push('<rect x="' + bx + '" y="' + (top + (bh * (31 - t)) / 32) + '" width="12" height="' +
        (bh / 32 + 0.5) + '" fill="' + rgb(viridis(t / 31)) + '"/>');
    }
    parts.push('<text x="' + (bx + 16) + '" y="' + (top + 8) + '" font-size="10">' + fmt(vmax, 3) + "</text>");
    parts.push('<text x="' + (bx + 16) + '" y="' + (top + bh / 2 + 4) + '" font-size="10">' +
      fmt(sq ? vmax / 4 : vmax / 2, 3) + "</text>");
    parts.push('<text x="' + (bx + 16) + '" y="' + (top + bh) + '" font-size="10">0</text>');
    parts.push("</svg>");
    this.view.innerHTML = parts.join("");
    this.readout("Hover a cell for its value.");
    var svg = this.view.querySelector("svg");
    function show(i, j) {
      if (i < 0 || j < 0 || i >= s.Lq || j >= s.Lk) return;
      var v = s.masked(i, j) ? "masked" : fmt(s.weight(l, h, i, j), 3);
      self.readout("query " + i + " \u00ab" + label(s.raw.q_tokens[i]) + "\u00bb \u2192 key " + j + " \u00ab" +
        label(s.raw.k_tokens[j]) + "\u00bb: " + v);
    }
    svg.addEventListener("mousemove", function (ev) {
      var c = ev.target.closest(".ax-cell");
      if (c) { show(Number(c.getAttribute("data-q")), Number(c.getAttribute("data-k"))); return; }
      if (ev.target.classList && ev.target.classList.contains("ax-raster")) {
        var r = ev.target.getBoundingClientRect();
        show(Math.floor(((ev.clientY - r.top) / r.height) * s.Lq), Math.floor(((ev.clientX - r.left) / r.width) * s.Lk));
      }
    });
  };

  /* ------------------------------------------------------------------ statistics */
  P.statRows = function () {
    var s = this.sec(), rows = [], key = this.st.sort.key, dir = this.st.sort.dir;
    for (var l = 0; l < s.N; l++) for (var h = 0; h < s.H; h++) {
      rows.push({layer: l, head: h, distance: s.raw.mean_distance[l][h], entropy: s.raw.entropy[l][h]});
    }
    rows.sort(function (a, b) {
      var x = a[key] === null ? -Infinity : a[key], y = b[key] === null ? -Infinity : b[key];
      return (x - y) * dir || (a.layer - b.layer) || (a.head - b.head);
    });
    return rows;
  };
  P.renderStats = function () {
    var s = this.sec(), self = this, st = this.st;
    var table = el("table", {"class": "ax-stats"}), head = el("tr");
    [["layer", "layer"], ["head", "head"], ["distance", "mean distance (tokens)"], ["entropy", "entropy (nats)"]]
      .forEach(function (c) {
        var arrow = st.sort.key === c[0] ? (st.sort.dir > 0 ? " \u25b2" : " \u25bc") : "";
        var th = el("th", {"data-key": c[0]}, c[1] + arrow);
        th.addEventListener("click", function () {
          st.sort = {key: c[0], dir: st.sort.key === c[0] ? -st.sort.dir : (c[0] === "layer" || c[0] === "head" ? 1 : -1)};
          self.render();
        });
        head.appendChild(th);
      });
    table.appendChild(head);
    this.statRows().forEach(function (r) {
      var tr = el("tr", {"data-layer": r.layer, "data-head": r.head});
      var sw = el("td"), chip = el("span", {"class": "ax-chip"});
      chip.style.background = headColor(r.head, s.H);
      sw.appendChild(chip); sw.appendChild(document.createTextNode(String(r.head)));
      tr.appendChild(el("td", {}, String(s.raw.layers[r.layer])));
      tr.appendChild(sw);
      tr.appendChild(el("td", {}, fmt(r.distance, 2)));
      tr.appendChild(el("td", {}, fmt(r.entropy, 3)));
      tr.addEventListener("click", function () { self.openZoom(r.layer, r.head); });
      table.appendChild(tr);
    });
    this.view.appendChild(table);
    this.readout("Per head, averaged over the query rows: mean attention distance (how far its weight reaches) and " +
      "entropy (0: one token; log n: uniform). Click a header to sort, a row to open its heatmap.");
  };
  P.statsSvg = function () {
    var s = this.sec(), rows = this.statRows(), rowH = 18, W = 420, Hh = 30 + rows.length * rowH + 8;
    var parts = [svgOpen(W, Hh, "ax-stats-svg")], cols = [10, 80, 190, 320];
    ["layer", "head", "mean distance", "entropy"].forEach(function (t, n) {
      parts.push('<text x="' + cols[n] + '" y="20" font-weight="bold">' + t + "</text>");
    });
    rows.forEach(function (r, n) {
      var y = 30 + (n + 1) * rowH - 4;
      parts.push('<text x="' + cols[0] + '" y="' + y + '">' + s.raw.layers[r.layer] + '</text><text x="' + cols[1] +
        '" y="' + y + '" fill="' + headColor(r.head, s.H) + '">' + r.head + '</text><text x="' + cols[2] + '" y="' +
        y + '">' + fmt(r.distance, 2) + '</text><text x="' + cols[3] + '" y="' + y + '">' + fmt(r.entropy, 3) +
        "</text>");
    });
    parts.push("</svg>");
    var box = document.createElement("div");
    box.innerHTML = parts.join("");
    return box.firstChild;
  };

  /* ------------------------------------------------------------------ generation */
  P.renderGen = function () {
    var s = this.sec(), self = this, p = s.raw.prompt_length, G = s.Lq - p, st = this.st;
    if (p === null || G <= 0) {
      this.view.appendChild(el("p", {}, "No generated tokens in this section."));
      return;
    }
    var prev = el("button", {"class": "ax-prev", type: "button"}, "\u25c0"),
        next = el("button", {"class": "ax-next", type: "button"}, "\u25b6");
    this.stepRange = el("input", {type: "range", min: 0, max: G - 1, value: st.step, "class": "ax-step"});
    prev.addEventListener("click", function () { self.setStep(st.step - 1); });
    next.addEventListener("click", function () { self.setStep(st.step + 1); });
    this.stepRange.addEventListener("input", function () { self.setStep(Number(self.stepRange.value)); });
    this.stepNote = el("span", {"class": "ax-step-note"});
    [prev, this.stepRange, next, this.stepNote].forEach(function (e) { self.controls.appendChild(e); });
    this.drawGen();
  };
  /* only the step's picture changes: the controls (and a dragged slider) stay */
  P.setStep = function (step) { this.st.step = step; this.drawGen(); };
  P.drawGen = function () {
    var s = this.sec(), p = s.raw.prompt_length, G = s.Lq - p, st = this.st;
    var step = Math.max(0, Math.min(st.step, G - 1));
    st.step = step;
    this.stepRange.value = String(step);
    var t = p + step, qi = t - 1, heads = this.selectedHeads(), l = st.layer, toks = s.raw.q_tokens;
    this.stepNote.textContent = " step " + (step + 1) + " / " + G + ": the query of \u00ab" + label(toks[qi]) +
      "\u00bb (position " + qi + ") writes \u00ab" + label(toks[t]) + "\u00bb";
    var w = [], j, m = 1e-9;
    for (j = 0; j <= qi; j++) {
      var sum = 0;
      heads.forEach(function (h) { sum += s.weight(l, h, qi, j); });
      w.push(heads.length ? sum / heads.length : 0);
      if (w[j] > m) m = w[j];
    }
    var cv = document.createElement("canvas").getContext("2d");
    cv.font = FONT;
    var W = 860, x = 8, y = 62, lineH = 26, boxes = [];
    for (j = 0; j <= t; j++) {
      var text = String(toks[j]).replace(/\n/g, "\u21b5"), tw = Math.ceil(cv.measureText(text).width) + 8;
      if (x + tw > W - 8) { x = 8; y += lineH; }
      boxes.push([j, x, y, tw, text]);
      x += tw + 2;
    }
    var height = y + lineH + 24 + 20 * 5, parts = [svgOpen(W, height, "ax-genview")];
    var which = heads.length === s.H ? "all " + s.H + " heads" : "heads " + heads.join(", ");
    parts.push('<text x="8" y="18" font-weight="bold">layer ' + s.raw.layers[l] + ", mean of " + which +
      ": where the query of step " + (step + 1) + " looks</text>");
    parts.push('<text x="8" y="36" fill="#555">darker = more weight; dashed box = the token being written; ' +
      "underlined = generated</text>");
    boxes.forEach(function (b) {
      var j = b[0], isNew = j === t, a = isNew ? 0 : w[j] / m;
      parts.push('<g class="ax-gtok" data-i="' + j + '" data-w="' + (isNew ? "" : w[j].toFixed(5)) + '"><rect x="' +
        b[1] + '" y="' + (b[2] - 16) + '" width="' + b[3] + '" height="22" rx="3" fill="#d62728" fill-opacity="' +
        (0.85 * a).toFixed(3) + '"' + (isNew ? ' stroke="#333" stroke-dasharray="3 2"' : "") + '/><text x="' +
        (b[1] + 4) + '" y="' + b[2] + '" xml:space="preserve"' + (j >= p ? ' text-decoration="underline"' : "") + ">" +
        esc(b[4]) + "</text></g>");
    });
    var order = w.map(function (v, j) { return j; }).sort(function (a, b) { return w[b] - w[a]; }).slice(0, 5);
    y += lineH + 14;
    parts.push('<text x="8" y="' + y + '" font-weight="bold">largest weights</text>');
    order.forEach(function (j, n) {
      parts.push('<text x="8" y="' + (y + 20 * (n + 1)) + '">' + j + " \u00ab" + esc(label(toks[j])) + "\u00bb " +
        fmt(w[j], 3) + (j >= p ? " (generated)" : " (prompt)") + "</text>");
    });
    parts.push("</svg>");
    this.view.innerHTML = parts.join("");
    this.readout("Each decoding step reads the last token and attends over the prompt and the output so far " +
      "(the KV cache); the weights are those of that query row.");
  };

  /* ------------------------------------------------------------------ export */
  P.currentSvg = function () {
    if (this.st.view === "stats") return this.statsSvg();
    return this.view.querySelector("svg");
  };
  P.fileName = function (ext) {
    var s = this.sec(), z = this.st.zoom, name = "attention-" + s.raw.name + "-" + this.st.view;
    if (this.st.view === "model" && z) name += "-layer" + s.raw.layers[z.layer] + "-head" + z.head;
    else if (this.st.view !== "stats" && this.st.view !== "model") name += "-layer" + s.raw.layers[this.st.layer];
    return name + "." + ext;
  };
  /* the view's SVG with a caption above it: what was shown (the page title, section, layer, heads) */
  P.captioned = function (svg) {
    var s = this.sec(), st = this.st, out = svg.cloneNode(true), w = Number(svg.getAttribute("width"));
    var h = Number(svg.getAttribute("height")) + 26, g = document.createElementNS(NS, "g"), t;
    var heads = this.selectedHeads().length === s.H ? "all heads" : "heads " + this.selectedHeads().join(", ");
    var what = st.view === "stats" ? "per-head statistics" : st.view === "model" && st.zoom ?
      "layer " + s.raw.layers[st.zoom.layer] + ", head " + st.zoom.head : st.view === "model" ? "layers \u00d7 heads" :
      "layer " + s.raw.layers[st.layer] + ", " + heads + (st.view === "gen" ? ", generation step " + (st.step + 1) : "");
    g.setAttribute("transform", "translate(0,26)");
    while (out.childNodes.length > 1) g.appendChild(out.childNodes[1]); // all but the background
    out.appendChild(g);
    t = document.createElementNS(NS, "text");
    t.setAttribute("x", "6"); t.setAttribute("y", "17"); t.setAttribute("font-weight", "bold");
    t.textContent = this.doc.title + " \u2014 " + s.raw.label + ", " + what;
    out.appendChild(t);
    w = Math.max(w, Math.ceil(7.5 * t.textContent.length) + 12); // room for the caption (bold, 12 px)
    out.setAttribute("width", String(w));
    out.setAttribute("height", String(h)); out.setAttribute("viewBox", "0 0 " + w + " " + h);
    return out;
  };
  P.exportView = function (kind) {
    var shown = this.currentSvg(), self = this;
    if (!shown) return;
    var svg = this.captioned(shown);
    var text = new XMLSerializer().serializeToString(svg);
    var url = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(text);
    if (kind === "svg") { this.download(this.fileName("svg"), url); return; }
    var img = new Image(), w = Number(svg.getAttribute("width")), h = Number(svg.getAttribute("height"));
    img.onload = function () {
      var scale = w * h > 4e6 ? 1 : 2, cv = document.createElement("canvas");
      cv.width = w * scale; cv.height = h * scale;
      var ctx = cv.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(img, 0, 0, cv.width, cv.height);
      self.download(self.fileName("png"), cv.toDataURL("image/png"));
    };
    img.src = url;
  };
  P.download = function (name, href) {
    var a = el("a", {download: name, href: href, "class": "ax-download"});
    this.root.appendChild(a);
    a.click();
    a.remove();
  };

  return function (root, doc) {
    root.explorer = new Explorer(root, doc);
    root.setAttribute("data-ready-ms", performance.now().toFixed(1)); // since navigation start: load + first view
    return root.explorer;
  };
})();
