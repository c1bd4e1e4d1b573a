/* Examtrail review pages: the access token lives in this tab's sessionStorage only.
 * Pages are shells; their content is an HTML fragment rendered by the server and
 * fetched here with the bearer token. No framework, no inline script (strict CSP). */
(function () {
  "use strict";
  var KEY = "examtrail.session";
  var expiryTimer = null;

  function session() {
    try {
      var saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
      if (saved && saved.token && saved.expiresAt > Date.now()) return saved;
    } catch (e) { /* ignore */ }
    return null;
  }

  function mark(name) {
    if (window.performance && performance.mark) performance.mark(name);
  }

  function forget() { sessionStorage.removeItem(KEY); }

  function toSignIn(expired) {
    forget();
    var next = location.pathname + location.search + location.hash;
    var query = [];
    if (expired) query.push("expired=1");
    if (next.indexOf("/ui/") === 0 && next !== "/ui/") query.push("next=" + encodeURIComponent(next));
    location.assign("/ui/" + (query.length ? "?" + query.join("&") : ""));
  }

  function safeNext() {
    var next = new URLSearchParams(location.search).get("next") || "";
    // Only a path of these pages: never another site.
    return /^\/ui\/[^\/\\]/.test(next) || next === "/ui/tests" ? next : "/ui/tests";
  }

  function authFetch(url, options) {
    var s = session();
    if (!s) { toSignIn(true); return Promise.reject(new Error("signed out")); }
    options = options || {};
    options.headers = Object.assign({ Authorization: "Bearer " + s.token }, options.headers || {});
    return fetch(url, options).then(function (response) {
      if (response.status === 401) { toSignIn(true); throw new Error("expired"); }
      return response;
    });
  }

  function errorText(response) {
    return response.json().then(function (body) {
      return (body && body.message) || ("Error " + response.status);
    }, function () { return "Error " + response.status; });
  }

  /* --- sign in ------------------------------------------------------------------------ */

  function setUpSignIn() {
    var form = document.getElementById("signin-form");
    if (!form) return;
    if (session()) { location.replace(safeNext()); return; }
    var error = document.getElementById("signin-error");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      error.hidden = true;
      var clientId = form.elements.client_id.value.trim();
      var apiKey = form.elements.client_secret.value;
      if (!clientId || !apiKey) {
        error.textContent = "Enter both the client ID and the API key.";
        error.hidden = false;
        return;
      }
      var body = new URLSearchParams({ grant_type: "client_credentials", client_id: clientId, client_secret: apiKey });
      fetch("/oauth/token", { method: "POST", body: body }).then(function (response) {
        if (!response.ok) {
          error.textContent = response.status === 401
            ? "The client ID or API key is not right."
            : "Signing in failed (" + response.status + ").";
          error.hidden = false;
          return null;
        }
        return response.json();
      }).then(function (token) {
        if (!token) return;
        sessionStorage.setItem(KEY, JSON.stringify({
          token: token.access_token,
          expiresAt: Date.now() + (token.expires_in || 3600) * 1000
        }));
        location.assign(safeNext());
      }).catch(function () {
        error.textContent = "The server cannot be reached.";
        error.hidden = false;
      });
    });
  }

  /* --- fragments ------------------------------------------------------------------------ */

  var localFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", timeZoneName: "short"
  });

  function localTimes(root) {
    var times = root.querySelectorAll("time[data-local]");
    for (var i = 0; i < times.length; i++) {
      var when = new Date(times[i].getAttribute("datetime"));
      if (isNaN(when.getTime())) continue;
      var span = document.createElement("span");
      span.className = "local";
      span.textContent = "Local: " + localFormat.format(when);
      times[i].insertAdjacentElement("afterend", span);
    }
  }

  function independently(step) {
    try { step(); } catch (e) { if (window.console) console.error(e); }
  }

  function loadFragment() {
    var content = document.getElementById("content");
    if (!content) return;
    if (!session()) { toSignIn(false); return; }
    authFetch(content.getAttribute("data-fragment")).then(function (response) {
      if (!response.ok) {
        return errorText(response).then(function (message) {
          content.textContent = "";
          var p = document.createElement("p");
          p.className = "error";
          p.setAttribute("role", "alert");
          p.textContent = message;
          content.appendChild(p);
        });
      }
      return response.text().then(function (html) {
        mark("examtrail:fetched");
        content.innerHTML = html;
        mark("examtrail:inserted");  // server-rendered, escaped; inline scripts never run (CSP)
        var h1 = content.querySelector("h1");
        if (h1) document.title = h1.textContent.replace(/\s+/g, " ").trim() + " · Examtrail review";
        // Each step on its own: one that fails (a bad link, an old browser) leaves the others working.
        independently(function () { localTimes(content); });
        mark("examtrail:local-times");
        independently(function () { setUpTimeline(content); });
        independently(function () { setUpExports(content); });
        mark("examtrail:ready");
      });
    }).catch(function () { /* redirected */ }).then(function () {
      content.setAttribute("aria-busy", "false");
    });
  }

  /* --- timeline: keyboard and permalinks ------------------------------------------------ */

  function setUpTimeline(root) {
    var timeline = root.querySelector("ol.timeline");
    if (!timeline) return;
    var items = Array.prototype.slice.call(timeline.querySelectorAll("li.event"));
    if (!items.length) return;
    var current = 0;
    items[0].tabIndex = 0;

    function focusAt(index) {
      index = Math.max(0, Math.min(items.length - 1, index));
      items[current].tabIndex = -1;
      current = index;
      items[current].tabIndex = 0;
      items[current].focus();
    }

    timeline.addEventListener("keydown", function (event) {
      var index = items.indexOf(event.target);
      if (index < 0) return;
      current = index;
      var key = event.key;
      if (key === "ArrowDown" || key === "j") focusAt(index + 1);
      else if (key === "ArrowUp" || key === "k") focusAt(index - 1);
      else if (key === "Home") focusAt(0);
      else if (key === "End") focusAt(items.length - 1);
      else return;
      event.preventDefault();
    });
    timeline.addEventListener("focusin", function (event) {
      var index = items.indexOf(event.target);
      if (index >= 0 && index !== current) { items[current].tabIndex = -1; current = index; items[index].tabIndex = 0; }
    });

    function showTarget() {
      var id = location.hash.slice(1);
      // A malformed escape (#ev-%E0%A4%A) is taken as written: it matches no event.
      try { id = decodeURIComponent(id); } catch (e) { /* keep it as written */ }
      var previous = timeline.querySelector(".is-target");
      if (previous) previous.classList.remove("is-target");
      if (!id) return;
      var target = document.getElementById(id);
      if (!target || items.indexOf(target) < 0) return;
      target.classList.add("is-target");
      focusAt(items.indexOf(target));
      target.scrollIntoView({ block: "center" });
    }
    window.addEventListener("hashchange", showTarget);
    showTarget();
  }

  /* --- exports --------------------------------------------------------------------------- */

  function formatSize(bytes) {
    if (bytes < 1024) return bytes + " bytes";
    var units = ["KiB", "MiB", "GiB"];
    var value = bytes, unit = -1;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return value.toFixed(1) + " " + units[unit];
  }

  /* The name the API's download gives the file (exports.service.download_name). */
  function downloadName(testId, job) {
    var suffix = "." + (job.format || "json") + (job.compression === "gzip" ? ".gz" : "");
    return "test-" + testId + "-events-" + job.jobId + suffix;
  }

  function setUpExports(root) {
    var panel = root.querySelector(".export");
    if (!panel) return;
    var status = panel.querySelector(".export-status");
    var bar = panel.querySelector("progress");
    var text = panel.querySelector(".export-text");
    var done = panel.querySelector(".export-done");
    var link = panel.querySelector("a[data-download]");
    var meta = panel.querySelector(".export-meta");
    var buttons = panel.querySelectorAll("button[data-export-test]");

    function busy(on) { for (var i = 0; i < buttons.length; i++) buttons[i].disabled = on; }

    function show(job) {
      bar.value = job.progress || 0;
      bar.textContent = (job.progress || 0) + "%";
      var counts = job.candidatesTotal != null
        ? " — " + (job.candidatesDone || 0) + " of " + job.candidatesTotal + " candidates"
        : "";
      text.textContent = "Export " + job.status + ": " + (job.progress || 0) + "%" + counts;
    }

    function poll(testId, jobId) {
      authFetch("/v1/test/" + encodeURIComponent(testId) + "/events?jobId=" + encodeURIComponent(jobId))
        .then(function (response) {
          if (!response.ok) return errorText(response).then(function (m) { throw new Error(m); });
          return response.json();
        }).then(function (job) {
          show(job);
          if (job.status === "finished") {
            link.href = job.downloadUrl;
            link.setAttribute("download", downloadName(testId, job));
            meta.textContent = formatSize(job.fileSize) + " · SHA-256 " + job.sha256;
            done.hidden = false;
            busy(false);
          } else if (job.status === "failed" || job.status === "cancelled" || job.status === "expired") {
            text.textContent = "Export " + job.status + (job.error ? ": " + job.error.message : "");
            busy(false);
          } else {
            setTimeout(function () { poll(testId, jobId); }, 500);
          }
        }).catch(function (error) {
          if (error.message === "expired" || error.message === "signed out") return;
          text.textContent = "Export status unavailable: " + error.message;
          busy(false);
        });
    }

    panel.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-export-test]");
      if (!button) return;
      var testId = button.getAttribute("data-export-test");
      var url = "/v1/test/" + encodeURIComponent(testId) + "/events";
      var user = button.getAttribute("data-export-user");
      // One candidate: the export's userId filter.
      if (user) url += "?userId=" + encodeURIComponent(user);
      busy(true);
      done.hidden = true;
      status.hidden = false;
      bar.value = 0;
      text.textContent = "Ordering the export…";
      authFetch(url, { method: "POST" }).then(function (response) {
        if (!response.ok) return errorText(response).then(function (m) { throw new Error(m); });
        return response.json();
      }).then(function (job) {
        show(job);
        poll(testId, job.jobId);
      }).catch(function (error) {
        if (error.message === "expired" || error.message === "signed out") return;
        text.textContent = "The export could not be ordered: " + error.message;
        busy(false);
      });
    });
  }

  /* --- every page ------------------------------------------------------------------------- */

  function start() {
    var out = document.getElementById("sign-out");
    if (out) out.addEventListener("click", function () { forget(); location.assign("/ui/"); });
    setUpSignIn();
    var s = session();
    if (s && document.body.getAttribute("data-page") !== "signin") {
      // Back to the sign-in form with a message the moment the token expires.
      expiryTimer = setTimeout(function () { toSignIn(true); }, Math.max(0, s.expiresAt - Date.now()));
    }
    loadFragment();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
