"use strict";
// The sora-search page: upload a clip to /api/query, show the ranked matches, play a library video from a span.
(function () {
  var token = new URLSearchParams(location.search).get("token");
  var $ = function (id) { return document.getElementById(id); };
  var drop = $("drop"), input = $("file"), status = $("status"), bar = $("progress"), results = $("results");
  var player = $("player"), playerBox = $("player-box");

  function withToken(url) {
    return token ? url + (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(token) : url;
  }
  function mmss(s) {
    s = Math.max(0, Math.round(s));
    return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function say(text, isError) { status.textContent = text; status.className = isError ? "error" : ""; }

  function getJSON(url) {
    var headers = token ? {Authorization: "Bearer " + token} : {};
    return fetch(url, {headers: headers}).then(function (r) { return r.json(); });
  }

  getJSON("api/info").then(function (info) {
    if (info.error) return;
    $("library").textContent = info.videos + " videos indexed (" + Math.round(info.duration_s / 60) + " min) in " +
      info.location;
  });

  function play(match, startS) {
    playerBox.hidden = false;
    $("player-title").textContent = match.name + " from " + mmss(startS);
    var src = withToken("api/videos/" + match.video_id + "/stream");
    var seek = function () { player.currentTime = startS; player.play().catch(function () {}); };
    if (player.dataset.src !== src) {
      player.dataset.src = src;
      player.src = src;
      player.addEventListener("loadedmetadata", seek, {once: true});
    } else {
      seek();
    }
    playerBox.scrollIntoView({block: "nearest"});
  }
  $("player-close").addEventListener("click", function () { player.pause(); playerBox.hidden = true; });

  function track(label, length, spans, key, match) {
    var row = el("div", {"class": "timeline"});
    row.appendChild(el("span", {}, label));
    var t = el("div", {"class": "track"});
    spans.forEach(function (s) {
      var a = s[key + "_start_s"], b = s[key + "_end_s"];
      var title = label + " " + mmss(a) + "–" + mmss(b) + (key === "ref" ? ": play from here" : "");
      var span = el(key === "ref" ? "button" : "div", {"class": "span", title: title, "aria-label": title});
      span.style.left = (100 * a / length) + "%";
      span.style.width = (100 * (b - a) / length) + "%";
      if (key === "ref") {
        span.type = "button";
        span.dataset.start = a;
        span.addEventListener("click", function () { play(match, a); });
      }
      t.appendChild(span);
    });
    row.appendChild(t);
    row.appendChild(el("span", {}, mmss(length)));
    return row;
  }

  function render(data, probeLength) {
    results.textContent = "";
    if (!data.matches.length) { say("No library video matches " + data.query + "."); return; }
    say(data.matches.length + " match" + (data.matches.length === 1 ? "" : "es") + " for " + data.query);
    data.matches.forEach(function (m, i) {
      m.name = m.path.split("/").pop();
      var li = el("li", {"class": "match", tabindex: "-1"});
      var h = el("h2");
      h.appendChild(el("span", {}, "#" + (i + 1)));
      h.appendChild(el("span", {"class": "name"}, m.name));
      h.appendChild(el("span", {"class": "score", title: "score"}, m.score.toFixed(3)));
      li.appendChild(h);
      li.appendChild(el("div", {"class": "muted path"}, m.path));
      var qEnd = Math.max.apply(null, m.segments.map(function (s) { return s.query_end_s; }));
      var qLen = Math.max(probeLength || 0, qEnd) || 1;
      li.appendChild(track("clip", qLen, m.segments, "query", m));
      getJSON("api/videos/" + m.video_id).then(function (v) {
        var rEnd = Math.max.apply(null, m.segments.map(function (s) { return s.ref_end_s; }));
        var refLen = Math.max(v.duration_s || 0, rEnd) || 1;
        li.insertBefore(track("library video", refLen, m.segments, "ref", m), thumbs);
      });
      var thumbs = el("div", {"class": "thumbs"});
      m.segments.forEach(function (s) {
        var step = Math.max(1, Math.ceil((s.ref_end_s - s.ref_start_s) / 5));
        for (var t = s.ref_start_s; t <= s.ref_end_s + 1e-6 && thumbs.children.length < 12; t += step) {
          var b = el("button", {type: "button", title: "play from " + mmss(t)});
          var src = withToken("api/videos/" + m.video_id + "/thumbnail?t=" + t.toFixed(2));
          var img = el("img", {alt: m.name + " at " + mmss(t), src: src, loading: "lazy"});
          b.appendChild(img);
          b.appendChild(el("div", {}, mmss(t)));
          b.addEventListener("click", play.bind(null, m, t));
          thumbs.appendChild(b);
        }
      });
      li.appendChild(thumbs);
      results.appendChild(li);
    });
  }

  function probeDuration(file) {
    return new Promise(function (resolve) {
      var v = document.createElement("video");
      var url = URL.createObjectURL(file);
      v.preload = "metadata";
      v.onloadedmetadata = function () {
        resolve(isFinite(v.duration) ? v.duration : 0);
        URL.revokeObjectURL(url);
      };
      v.onerror = function () { resolve(0); URL.revokeObjectURL(url); };
      v.src = url;
    });
  }

  function upload(file) {
    if (!file) return;
    var form = new FormData();
    form.append("file", file);
    form.append("k", $("k").value || "10");
    form.append("views", $("views").value);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "api/query");
    if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
    bar.hidden = false; bar.value = 0; results.textContent = "";
    say("Uploading " + file.name + "…");
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.value = e.loaded / e.total;
      if (e.loaded === e.total) { bar.removeAttribute("value"); say("Searching for " + file.name + "…"); }
    };
    var length = probeDuration(file);
    xhr.onload = function () {
      bar.hidden = true;
      var data;
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = {error: "the server answered " + xhr.status}; }
      if (xhr.status !== 200) { say(data.error || ("error " + xhr.status), true); return; }
      length.then(function (len) { render(data, len); });
    };
    xhr.onerror = function () { bar.hidden = true; say("The server could not be reached.", true); };
    xhr.send(form);
  }

  input.addEventListener("change", function () { upload(input.files[0]); input.value = ""; });
  drop.addEventListener("keydown", function (e) {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  ["dragenter", "dragover", "dragleave", "drop"].forEach(function (n) {
    drop.addEventListener(n, function (e) {
      e.preventDefault();
      drop.classList.toggle("over", n === "dragenter" || n === "dragover");
    });
  });
  drop.addEventListener("drop", function (e) { upload(e.dataTransfer.files[0]); });
  document.addEventListener("keydown", function (e) {
    if (!(e.key === "j" || e.key === "k") || e.target.closest("input, select, textarea")) return;
    var items = Array.prototype.slice.call(results.children);
    var at = items.indexOf(document.activeElement);
    var next = items[Math.max(0, Math.min(items.length - 1, at + (e.key === "j" ? 1 : -1)))];
    if (next) next.focus();
  });
})();
