// The dashboard's two pages. Both poll the JSON API every second and redraw in place;
// text goes in through textContent only (names and messages are never HTML).
(function () {
  "use strict";
  var POLL_MS = 1000;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function weights(w) { return w ? w.stable + "/" + w.canary : "-"; }

  function step(r) { return r.totalSteps ? r.step + "/" + r.totalSteps : String(r.step); }

  function fmtTime(seconds) { return new Date(seconds * 1000).toISOString().replace(".000", ""); }

  function since(iso) {
    if (!iso) return "-";
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 120) return s + "s";
    if (s < 7200) return Math.round(s / 60) + "m";
    return Math.round(s / 3600) + "h";
  }

  function poll(url, onData, onError) {
    var stopped = false;
    function once() {
      fetch(url, {cache: "no-store", credentials: "same-origin"}).then(function (resp) {
        return resp.json().then(function (body) {
          if (!resp.ok) throw new Error(body.error || resp.statusText);
          onData(body);
        });
      }).catch(function (err) { onError(String(err.message || err)); })
        .finally(function () { if (!stopped) setTimeout(once, POLL_MS); });
    }
    once();
    return function () { stopped = true; };
  }

  function updated(text) {
    document.getElementById("updated").textContent = text;
  }

  function list() {
    var body = document.querySelector("#rollouts tbody");
    poll("/api/rollouts", function (data) {
      var rows = document.createDocumentFragment();
      data.rollouts.forEach(function (r) {
        var tr = el("tr");
        tr.dataset.rollout = r.namespace + "/" + r.name;
        tr.appendChild(el("td", r.namespace));
        var link = el("a", r.name);
        link.href = "/rollouts/" + encodeURIComponent(r.namespace) + "/" + encodeURIComponent(r.name);
        tr.appendChild(el("td")).appendChild(link);
        tr.appendChild(el("td", r.phase, "phase phase-" + r.phase));
        tr.appendChild(el("td", step(r)));
        tr.appendChild(el("td", weights(r.weights), "written"));
        tr.appendChild(el("td", r.observedWeights ? weights(r.observedWeights) : (r.notObserved || "-"),
                          "observed"));
        tr.appendChild(el("td", r.slo, r.slo === "failing" ? "failing" : (r.slo === "ok" ? "ok" : "")));
        tr.appendChild(el("td", r.gates || "-"));
        tr.appendChild(el("td", since(r.since)));
        rows.appendChild(tr);
      });
      body.replaceChildren(rows);
      updated(data.rollouts.length + " rollout(s), updated " + new Date().toLocaleTimeString());
    }, function (err) { updated("cannot update: " + err); });
  }

  function summary(r) {
    var rows = [["Phase", r.phase + (r.pauseReason ? " (" + r.pauseReason + ")" : "")],
                ["Step", step(r)], ["Weights written", weights(r.weights)],
                ["Weights observed", r.observedWeights ? weights(r.observedWeights) : (r.notObserved || "-")],
                ["SLO", r.slo], ["Waiting for", r.gates || "-"],
                ["Revision", (r.revision || "-") + " (stable " + (r.stableRevision || "-") + ")"],
                ["Message", r.message || "-"]];
    if (r.abortReason) rows.push(["Aborted", r.abortReason]);
    var table = document.getElementById("summary");
    var frag = document.createDocumentFragment();
    rows.forEach(function (kv) {
      var tr = el("tr");
      tr.appendChild(el("th", kv[0]));
      tr.appendChild(el("td", kv[1])).dataset.field = kv[0];
      frag.appendChild(tr);
    });
    table.replaceChildren(frag);
  }

  function events(t) {
    var frag = document.createDocumentFragment();
    t.marks.slice().reverse().forEach(function (m) {
      var tr = el("tr", undefined, m.kind + (m.warning ? " warning" : ""));
      tr.appendChild(el("td", fmtTime(m.at)));
      tr.appendChild(el("td", m.kind));
      tr.appendChild(el("td", m.label));
      frag.appendChild(tr);
    });
    document.querySelector("#events tbody").replaceChildren(frag);
  }

  // The revisions the rollout knows (a cluster's; a local run has none to show).
  function revisions(rows) {
    var frag = document.createDocumentFragment();
    (rows || []).forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("td", r.role));
      tr.appendChild(el("td", r.revision || "-"));
      tr.appendChild(el("td", r.image || "-"));
      frag.appendChild(tr);
    });
    if (!frag.childNodes.length) {
      var none = el("tr");
      none.appendChild(el("td", "kept by the cluster only (a local run has its status)", "muted"));
      frag.appendChild(none);
    }
    document.querySelector("#revisions tbody").replaceChildren(frag);
  }

  function act(ns, name, action) {
    var dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent =
      action.charAt(0).toUpperCase() + action.slice(1) + " rollout " + ns + "/" + name + "?";
    var comment = document.getElementById("confirm-comment");
    var approving = action === "approve";  // an approval carries a comment for the audit trail
    comment.hidden = !approving;
    comment.value = "";
    dialog.returnValue = "";
    dialog.onclose = function () {
      if (dialog.returnValue !== "ok") return;
      var result = document.getElementById("result");
      var init = {method: "POST", credentials: "same-origin", headers: {"X-Meshctl-Action": "1"}};
      if (approving) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify({comment: comment.value});
      }
      fetch("/api/rollouts/" + encodeURIComponent(ns) + "/" + encodeURIComponent(name) + "/" + action, init)
        .then(function (resp) { return resp.json().then(function (body) {
          result.textContent = !resp.ok ? "refused: " + body.error
            : approving ? "approved (the gate counts it on the next pass)"
            : action + " requested (the controller acts on its next pass)";
        }); })
        .catch(function (err) { result.textContent = "failed: " + err; });
    };
    dialog.showModal();
  }

  function buttons(r, canAct) {
    var box = document.getElementById("actions");
    var wanted = canAct ? r.actions.join(",") : "";
    if (box.dataset.shown === wanted) return;  // keep buttons stable while nothing changes
    box.dataset.shown = wanted;
    box.replaceChildren();
    if (!canAct) return;
    r.actions.forEach(function (action) {
      var b = el("button", action.charAt(0).toUpperCase() + action.slice(1));
      b.id = "action-" + action;
      b.type = "button";
      b.onclick = function () { act(r.namespace, r.name, action); };
      box.appendChild(b);
    });
  }

  function rollout() {
    var parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    var ns = parts[1], name = parts[2];
    document.getElementById("title").textContent = "Rollout " + ns + "/" + name;
    var charts = null;
    poll("/api/rollouts/" + encodeURIComponent(ns) + "/" + encodeURIComponent(name), function (data) {
      summary(data.rollout);
      buttons(data.rollout, data.canAct);
      events(data.timeline);
      revisions(data.revisions);
      if (charts === null) {
        charts = MeshctlTimeline.render(document.getElementById("charts"), data.timeline);
        window.meshctlCharts = charts;
      } else {
        charts.update(data.timeline);
      }
      window.meshctlTimeline = data.timeline;
      updated("updated " + new Date().toLocaleTimeString());
    }, function (err) { updated("cannot update: " + err); });
  }

  window.MeshctlDashboard = {list: list, rollout: rollout};
  var page = document.body.dataset.page;
  if (page === "list") list();
  if (page === "rollout") rollout();
})();
