"use strict";
// The sora-search page: search by clip (upload to /api/query, ranked matches), the library (keyframe strips of
// each video), duplicates (pairs from /api/duplicates); any thumbnail or span plays the library video from there.
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
    var h = Math.floor(s / 3600), m = String(Math.floor(s / 60) % 60).padStart(2, "0");
    return (h ? h + ":" : "") + m + ":" + String(s % 60).padStart(2, "0");
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function baseName(path) { return path.split("/").pop(); }
  // Where in the clip a match was found, as the CLI and the HTML report say it (sora_search.types.Match.found_in).
  var VIEW_NAMES = {hflip: "mirror image", rot90: "frame turned a quarter", rot180: "frame turned upside down",
                    rot270: "frame turned three quarters", left: "left half", right: "right half", top: "top half",
                    bottom: "bottom half", inset: "inset"};
  function foundIn(m) {
    if (!m.view || m.view === "full") return "";
    var text = "the clip's " + (VIEW_NAMES[m.view] || "window");
    if (m.region) {
      var r = m.region.map(function (v) { return Math.round(100 * v); });
      text += ", " + r[0] + "% across and " + r[1] + "% down, " + r[2] + "% x " + r[3] + "% of the frame";
    }
    return text;
  }
  function say(target, text, isError) { target.textContent = text; target.className = isError ? "error" : ""; }

  function getJSON(url) {
    var headers = token ? {Authorization: "Bearer " + token} : {};
    return fetch(url, {headers: headers}).then(function (r) {
      return r.json().catch(function () { return {error: "the server answered " + r.status}; });
    });
  }

  getJSON("api/info").then(function (info) {
    if (info.error) return;
    $("library").textContent = info.videos + " videos indexed (" + Math.round(info.duration_s / 60) + " min) in " +
      info.location;
  });

  // ---------------------------------------------------------------- views: #search, #videos, #duplicates
  var views = {search: null, videos: loadVideos, duplicates: loadDupes}, loaded = {}, current = null;
  function show() {
    var name = location.hash.slice(1);
    if (!(name in views)) {
      if (current) return;  // another anchor (the skip link): the view stays
      name = "search";
    }
    current = name;
    Object.keys(views).forEach(function (v) { $("view-" + v).hidden = v !== name; });
    document.querySelectorAll("nav a").forEach(function (a) {
      if (a.dataset.view === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    if (views[name] && !loaded[name]) { loaded[name] = true; views[name](true); }
  }
  window.addEventListener("hashchange", show);

  // ---------------------------------------------------------------- the player
  function play(video, startS) {
    playerBox.hidden = false;
    $("player-title").textContent = video.name + " from " + mmss(startS);
    var src = withToken("api/videos/" + video.video_id + "/stream");
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
  function closePlayer() { player.pause(); playerBox.hidden = true; }
  $("player-close").addEventListener("click", closePlayer);

  // A button showing the thumbnail of (video, second) that plays the video from there.
  function thumb(video, t, label) {
    var b = el("button", {type: "button", "class": "thumb", title: "play " + video.name + " from " + mmss(t)});
    var src = withToken("api/videos/" + video.video_id + "/thumbnail?t=" + t.toFixed(2));
    b.appendChild(el("img", {alt: video.name + " at " + mmss(t), src: src, loading: "lazy"}));
    b.appendChild(el("span", {}, label || mmss(t)));
    b.addEventListener("click", play.bind(null, video, t));
    return b;
  }

  // ---------------------------------------------------------------- search by clip
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
    if (!data.matches.length) {
      say(status, data.blank ? data.query + " is blank throughout (black, a fade or one colour): nothing to compare."
                             : "No library video matches " + data.query + ".");
      return;
    }
    say(status, data.matches.length + " match" + (data.matches.length === 1 ? "" : "es") + " for " + data.query);
    data.matches.forEach(function (m, i) {
      m.name = baseName(m.path);
      var li = el("li", {"class": "match card", tabindex: "-1"});
      var h = el("h3");
      h.appendChild(el("span", {"class": "rank"}, "#" + (i + 1)));
      h.appendChild(el("span", {"class": "name"}, m.name));
      h.appendChild(el("span", {"class": "score", title: "score"}, m.score.toFixed(3)));
      li.appendChild(h);
      li.appendChild(el("div", {"class": "muted path"}, m.path));
      var where = foundIn(m);
      if (where) li.appendChild(el("div", {"class": "found"}, "Found in " + where + "."));
      var qEnd = Math.max.apply(null, m.segments.map(function (s) { return s.query_end_s; }));
      var qLen = Math.max(probeLength || 0, qEnd) || 1;
      li.appendChild(track("clip", qLen, m.segments, "query", m));
      var thumbs = el("div", {"class": "thumbs"});
      getJSON("api/videos/" + m.video_id).then(function (v) {
        var rEnd = Math.max.apply(null, m.segments.map(function (s) { return s.ref_end_s; }));
        var refLen = Math.max(v.duration_s || 0, rEnd) || 1;
        li.insertBefore(track("library video", refLen, m.segments, "ref", m), thumbs);
      });
      m.segments.forEach(function (s) {
        var step = Math.max(1, Math.ceil((s.ref_end_s - s.ref_start_s) / 5));
        for (var t = s.ref_start_s; t <= s.ref_end_s + 1e-6 && thumbs.children.length < 12; t += step) {
          thumbs.appendChild(thumb(m, t));
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
    form.append("read_text", $("read-text").checked ? "true" : "false");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "api/query");
    if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
    bar.hidden = false; bar.value = 0; results.textContent = "";
    closePlayer();  // it played a match of the clip before
    say(status, "Uploading " + file.name + "…");
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.value = e.loaded / e.total;
      if (e.loaded === e.total) { bar.removeAttribute("value"); say(status, "Searching for " + file.name + "…"); }
    };
    var length = probeDuration(file);
    xhr.onload = function () {
      bar.hidden = true;
      var data;
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = {error: "the server answered " + xhr.status}; }
      if (xhr.status !== 200) { say(status, data.error || ("error " + xhr.status), true); return; }
      length.then(function (len) { render(data, len); });
    };
    xhr.onerror = function () { bar.hidden = true; say(status, "The server could not be reached.", true); };
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
  // j/k move between the cards of the view on screen.
  document.addEventListener("keydown", function (e) {
    if (!(e.key === "j" || e.key === "k") || e.target.closest("input, select, textarea")) return;
    var list = document.querySelector(".view:not([hidden]) .cards");
    var items = list ? Array.prototype.slice.call(list.children) : [];
    var at = items.indexOf(e.target.closest(".card"));
    var next = items[Math.max(0, Math.min(items.length - 1, at + (e.key === "j" ? 1 : -1)))];
    if (next) next.focus();
  });

  // ---------------------------------------------------------------- the library: each video as keyframes
  var PAGE = 20, videoOffset = 0, videoStatus = $("videos-status"), videoList = $("video-list");
  function loadVideos(fresh) {
    if (fresh) { videoOffset = 0; videoList.textContent = ""; }
    var q = $("video-q").value.trim();
    say(videoStatus, "Loading…");
    getJSON("api/videos?limit=" + PAGE + "&offset=" + videoOffset + "&q=" + encodeURIComponent(q)).then(function (d) {
      if (d.error) { say(videoStatus, d.error, true); return; }
      d.videos.forEach(function (v) { videoList.appendChild(videoCard(v)); });
      videoOffset += d.videos.length;
      say(videoStatus, d.total ? "Showing " + videoOffset + " of " + d.total + " videos" + (q ? " matching “" + q +
        "”" : "") + ". Each strip shows the seconds where the footage changes most." :
        "No indexed video" + (q ? " has “" + q + "” in its path." : "."));
      $("videos-more").hidden = videoOffset >= d.total;
    });
  }
  function videoCard(v) {
    var video = {video_id: v.id, name: v.name};
    var li = el("li", {"class": "card video", tabindex: "-1"});
    var h = el("h3");
    h.appendChild(el("span", {"class": "name"}, v.name));
    h.appendChild(el("span", {"class": "badge"}, mmss(v.duration_s)));
    if (v.width) h.appendChild(el("span", {"class": "muted"}, v.width + "×" + v.height));
    li.appendChild(h);
    li.appendChild(el("div", {"class": "muted path"}, v.path));
    var strip = el("div", {"class": "thumbs strip", "aria-label": "keyframes of " + v.name});
    li.appendChild(strip);
    getJSON("api/videos/" + v.id + "/keyframes").then(function (k) {
      if (k.error) { strip.appendChild(el("span", {"class": "error"}, k.error)); return; }
      k.seconds.forEach(function (t) { strip.appendChild(thumb(video, t)); });
    });
    return li;
  }
  $("video-search").addEventListener("submit", function (e) { e.preventDefault(); loadVideos(true); });
  $("videos-more").addEventListener("click", function () { loadVideos(false); });

  // ---------------------------------------------------------------- duplicates
  var RELATION = {same: "Same video", a_contains_b: "First contains second", b_contains_a: "Second contains first",
                  partial: "Shared footage"};
  var dupesStatus = $("dupes-status"), dupeList = $("dupe-list");
  function pct(x) { return Math.round(100 * x) + "%"; }
  function loadDupes() {
    var button = $("dupes-run");
    button.disabled = true;
    dupeList.textContent = "";
    say(dupesStatus, "Comparing every video with the rest of the library…");
    getJSON("api/duplicates").then(function (d) {
      button.disabled = false;
      if (d.error) { say(dupesStatus, d.error, true); return; }
      say(dupesStatus, d.pairs.length ? d.pairs.length + " pair" + (d.pairs.length === 1 ? "" : "s") +
        " of videos share footage" + (d.groups.length ? "; " + d.groups.length + " group" +
        (d.groups.length === 1 ? "" : "s") + " of copies" : "") + "." : "No two videos share footage.");
      d.groups.forEach(function (g, i) {
        var li = el("li", {"class": "card group", tabindex: "-1"});
        li.appendChild(el("h3", {}, "Copies of one video, group " + (i + 1)));
        var ul = el("ul", {"class": "members"});
        g.members.forEach(function (m, j) {
          ul.appendChild(el("li", {}, (j === 0 ? "keep  " : "copy  ") + m));
        });
        li.appendChild(ul);
        dupeList.appendChild(li);
      });
      d.pairs.forEach(function (p) { dupeList.appendChild(pairCard(p)); });
    }, function () { button.disabled = false; say(dupesStatus, "The server could not be reached.", true); });
  }
  function pairCard(p) {
    var a = {video_id: p.a_id, name: baseName(p.a)}, b = {video_id: p.b_id, name: baseName(p.b)};
    var li = el("li", {"class": "card pair", tabindex: "-1"});
    var h = el("h3");
    h.appendChild(el("span", {"class": "relation " + p.relation}, RELATION[p.relation] || p.relation));
    h.appendChild(el("span", {"class": "score", title: "score"}, p.score.toFixed(3)));
    li.appendChild(h);
    // Up to 4 seconds along each of the first 3 segments, the same moments of both videos in one column each.
    var times = [];
    p.segments.slice(0, 3).forEach(function (s) {
      var n = Math.min(4, Math.max(1, Math.floor(s.a_end_s - s.a_start_s) + 1));
      for (var i = 0; i < n; i++) {
        var f = n === 1 ? 0 : i / (n - 1);
        times.push([s.a_start_s + f * (s.a_end_s - s.a_start_s), s.b_start_s + f * (s.b_end_s - s.b_start_s)]);
      }
    });
    [[a, p.a, p.a_covered, 0], [b, p.b, p.b_covered, 1]].forEach(function (side) {
      var row = el("div", {"class": "side"});
      var label = el("div", {"class": "side-label"});
      label.appendChild(el("strong", {}, side[0].name));
      label.appendChild(el("span", {"class": "muted"}, pct(side[2]) + " of it shared"));
      label.appendChild(el("span", {"class": "muted path"}, side[1]));
      row.appendChild(label);
      var strip = el("div", {"class": "thumbs"});
      times.forEach(function (t) { strip.appendChild(thumb(side[0], t[side[3]])); });
      row.appendChild(strip);
      li.appendChild(row);
    });
    var spans = el("div", {"class": "muted"});
    spans.textContent = p.segments.map(function (s) {
      return mmss(s.a_start_s) + "–" + mmss(s.a_end_s) + " of the first = " + mmss(s.b_start_s) + "–" +
        mmss(s.b_end_s) + " of the second";
    }).join("; ");
    li.appendChild(spans);
    return li;
  }
  $("dupes-run").addEventListener("click", loadDupes);

  show();
})();
