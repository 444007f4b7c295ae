// meltano-forge pages: drafts, the "You have uncommitted changes" prompt, live updates
// over the API's event stream, and the editor's live project check (in the CodeMirror
// editor of vendor/codemirror.js when it loaded, on the plain text area otherwise).
// Everything here is an enhancement: without scripts the pages read and the forms post as
// plain HTML.
(function () {
  "use strict";

  var body = document.body;

  // ---- live updates ------------------------------------------------------------------
  function notice(text) {
    var box = document.getElementById("live-notice");
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
  }

  function refresh() {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      fetch(el.getAttribute("data-live"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) el.innerHTML = html; });
    });
  }

  var events = body.getAttribute("data-events");
  if (events && window.EventSource) {
    var source = new EventSource(events);
    source.addEventListener("branch_moved", function (e) {
      var data = JSON.parse(e.data);
      notice(data.branch + " moved to " + String(data.sha).slice(0, 12));
      var editor = document.getElementById("editor");
      if (editor && editor.getAttribute("data-branch") === data.branch &&
          editor.getAttribute("data-base") !== data.sha) {
        var moved = document.getElementById("moved-live");
        if (moved) moved.hidden = false;
      }
      refresh();
    });
    source.addEventListener("redeploy_requested", function () {
      notice("A redeploy was requested");
      refresh();
    });
  }

  // ---- drafts (one per project, branch and file) ---------------------------------------
  document.querySelectorAll("[data-clear-draft]").forEach(function (el) {
    localStorage.removeItem("mf-draft:" + el.getAttribute("data-clear-draft"));
  });

  var form = document.getElementById("editor");
  if (!form) return;
  var area = document.getElementById("content");
  var key = "mf-draft:" + form.getAttribute("data-draft-key");
  // The file as the branch has it at `base`; the text area may hold a draft the server
  // sent back (a pull merged into it, a commit that found the branch moved).
  // Text areas hold LF line ends, whatever the file has (the server keeps CRLF files CRLF).
  var original = JSON.parse(document.getElementById("pristine").textContent).replace(/\r\n/g, "\n");
  var base = form.getAttribute("data-base");
  var discard = document.getElementById("discard");
  var dialog = document.getElementById("uncommitted");
  var leaving = false;
  var code = null;  // the code editor over the text area, once attached

  function dirty() { return area.value !== original; }

  // The draft's text, wherever it is shown (the code editor keeps the text area in step).
  function setText(text) {
    if (code) code.setValue(text); else area.value = text;
    save();
  }

  function save() {
    if (dirty()) {
      localStorage.setItem(key, JSON.stringify({ base: base, content: area.value, at: Date.now() }));
      discard.hidden = false;
    } else {
      localStorage.removeItem(key);
      discard.hidden = true;
    }
  }

  var stored = localStorage.getItem(key);
  if (form.hasAttribute("data-posted")) {
    save();  // the server's answer to the draft we posted is the draft now
  } else if (stored) {
    var draft = JSON.parse(stored);
    if (draft.content !== original) {
      area.value = draft.content;
      if (draft.base !== base) {
        // The branch moved under the draft: bring it back through Pull, which merges.
        form.querySelector("input[name=base]").value = draft.base;
        base = draft.base;
        notice("Your draft was restored; it was made on an older commit, so Pull merges the branch into it.");
      } else {
        notice("Your unsaved draft was restored.");
      }
      discard.hidden = false;
    }
  }

  // ---- the project's check, as you type --------------------------------------------------
  var status = document.getElementById("check-status");
  var list = document.getElementById("check-findings");

  function where(f) { return f.file + (f.line ? ":" + f.line : ""); }

  function show(result) {
    status.className = result.refused ? "error" : "muted";
    status.textContent = result.refused
      ? "The project's check fails with this change: fix the errors below to commit."
      : result.errors.length
        ? "No new errors: the project's check already failed on the branch, and this change does not add to it."
        : "No errors: the project passes the check.";
    list.textContent = "";
    result.errors.concat(result.warnings).forEach(function (f) {
      var item = document.createElement("li");
      item.className = "finding finding-" + f.severity + (f.here ? " here" : "");
      var at = document.createElement("code");
      at.textContent = where(f);
      if (code && f.here && f.line) {  // a finding in this file: a button to its line
        var go = document.createElement("button");
        go.type = "button";
        go.className = "go-to";
        go.title = "Go to line " + f.line;
        go.append(at);
        go.addEventListener("click", function () { code.goTo(f.line); });
        at = go;
      }
      var rule = document.createElement("span");
      rule.className = "rule";
      rule.textContent = f.rule;
      item.append(at, " ", rule, " ", f.message);
      if (f.severity === "error" && !f.new) {
        var old = document.createElement("span");
        old.className = "muted";
        old.textContent = " (already on the branch)";
        item.append(old);
      }
      list.append(item);
    });
  }

  // One check of `text` on the draft's commit; the findings in this file, for the gutter.
  function check(text) {
    var data = new FormData();
    data.append("csrf", form.querySelector("input[name=csrf]").value);
    data.append("path", form.querySelector("input[name=path]").value);
    data.append("branch", form.getAttribute("data-branch"));
    data.append("base", base);
    data.append("content", text);
    return fetch(form.getAttribute("data-check"), { method: "POST", body: data, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (result) {
        if (!result) return [];
        show(result);
        return result.errors.concat(result.warnings).filter(function (f) { return f.here; });
      }, function () { return []; });
  }

  var names = JSON.parse(document.getElementById("names").textContent);
  if (window.MeltanoForgeEditor && !area.readOnly) {
    var label = form.querySelector("input[name=path]").value + " (code editor)";
    code = window.MeltanoForgeEditor.attach(area, { check: check, names: names, changed: save, delay: 400, label: label });
  } else {
    var timer = null;
    area.addEventListener("input", function () {
      save();
      clearTimeout(timer);
      timer = setTimeout(function () { check(area.value); }, 400);
    });
    if (!area.readOnly) check(area.value);
  }

  discard.addEventListener("click", function () {
    localStorage.removeItem(key);
    setText(original);
    discard.hidden = true;
  });

  // ---- the prompt ------------------------------------------------------------------------
  function ask(text, allowMerge) {
    document.getElementById("uncommitted-text").textContent = text;
    dialog.querySelector("[data-choice=merge]").hidden = !allowMerge;
    // No Commit choice where this page may not commit (read role, read-only branch).
    dialog.querySelector("[data-choice=commit]").hidden = document.getElementById("commit").disabled;
    return new Promise(function (resolve) {
      dialog.querySelectorAll("button[data-choice]").forEach(function (button) {
        button.onclick = function () { dialog.close(); resolve(button.getAttribute("data-choice")); };
      });
      dialog.addEventListener("cancel", function () { resolve("cancel"); }, { once: true });
      dialog.showModal();
    });
  }

  function commitNow() {
    leaving = true;
    form.action = form.getAttribute("action");
    form.requestSubmit(document.getElementById("commit"));
  }

  document.querySelectorAll("a[data-switch]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      if (!dirty()) return;
      event.preventDefault();
      ask("Your draft of this file is not committed. Switching leaves it behind.", false)
        .then(function (choice) {
          if (choice === "commit") commitNow();
          else if (choice === "discard") { localStorage.removeItem(key); leaving = true; location.href = link.href; }
        });
    });
  });

  var pull = document.getElementById("pull");
  pull.addEventListener("click", function (event) {
    if (!dirty() || pull.getAttribute("data-confirmed")) return;
    event.preventDefault();
    ask("Your draft of this file is not committed. Pull can merge the branch into it.", true)
      .then(function (choice) {
        if (choice === "commit") commitNow();
        else if (choice === "merge") { leaving = true; pull.setAttribute("data-confirmed", "1"); form.requestSubmit(pull); }
        else if (choice === "discard") {
          setText(original);
          localStorage.removeItem(key);
          leaving = true;
          pull.setAttribute("data-confirmed", "1");
          form.requestSubmit(pull);
        }
      });
  });

  form.addEventListener("submit", function () { leaving = true; });
  window.addEventListener("beforeunload", function (event) {
    if (dirty() && !leaving) { event.preventDefault(); event.returnValue = ""; }
  });
})();
