// The web editor's code editor: CodeMirror 6 over the page's <textarea>, bundled by
// build.sh into ../static/vendor/codemirror.js as one global, MeltanoForgeEditor.
// The textarea stays the form's field: every change is written back to it, so the form
// posts what the editor shows, and a page without scripts keeps the plain textarea.
import { autocompletion, completionKeymap } from "@codemirror/autocomplete";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { yaml } from "@codemirror/lang-yaml";
import {
  bracketMatching,
  defaultHighlightStyle,
  indentOnInput,
  syntaxHighlighting,
} from "@codemirror/language";
import { forceLinting, linter, lintGutter } from "@codemirror/lint";
import { highlightSelectionMatches, searchKeymap } from "@codemirror/search";
import { EditorState } from "@codemirror/state";
import {
  drawSelection,
  EditorView,
  highlightActiveLine,
  highlightActiveLineGutter,
  keymap,
  lineNumbers,
} from "@codemirror/view";

// A finding (1-based line and column, or none) as a range of the document.
function range(doc, finding) {
  var number = Math.min(Math.max(finding.line || 1, 1), doc.lines);
  var line = doc.line(number);
  var from = line.from + Math.min(Math.max((finding.column || 1) - 1, 0), line.length);
  var to = finding.column ? Math.min(from + 1, line.to) : line.to;
  return { from: from, to: Math.max(to, from) };
}

// Names the project defines, offered where a word is typed (or on Ctrl-Space).
function completer(names) {
  var options = [];
  Object.keys(names).forEach(function (kind) {
    names[kind].forEach(function (name) {
      options.push({ label: name, type: kind === "plugins" ? "class" : "variable", detail: kind.replace(/s$/, "") });
    });
  });
  return function (context) {
    var word = context.matchBefore(/[\w.@:-]+/);
    if (!word && !context.explicit) return null;
    return { from: word ? word.from : context.pos, options: options, validFor: /^[\w.@:-]*$/ };
  };
}

// The page's look (app.css does not reach into the shadow root): WCAG AA contrast, the
// site's visible focus ring, a fixed height that scrolls.
var theme = EditorView.theme({
  "&": { border: "1px solid #8895a1", borderRadius: "4px", background: "#fff", color: "#1b1f24", height: "38rem", fontSize: "14px" },
  "&.cm-focused": { outline: "3px solid #ffbf47", outlineOffset: "2px" },
  ".cm-scroller": { fontFamily: "ui-monospace, SFMono-Regular, Menlo, monospace", lineHeight: "1.45", overflow: "auto" },
  ".cm-gutters": { background: "#f6f8fa", color: "#4d5661", borderRight: "1px solid #c9d1d9" },
  ".cm-tooltip": { fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", maxWidth: "min(40rem, 90vw)" },
});

// Attach an editor to `textarea`. `check(text)` returns a Promise of the findings to mark in
// this file ([{line, column, severity, message, rule}]); `names` maps a kind (plugins, jobs,
// environments, schedules) to the project's names; `changed(text)` hears every edit;
// `label` names the editor for assistive technology.
function attach(textarea, options) {
  var readOnly = textarea.readOnly;
  var extensions = [
    lineNumbers(),
    highlightActiveLineGutter(),
    history(),
    drawSelection(),
    indentOnInput(),
    bracketMatching(),
    highlightActiveLine(),
    highlightSelectionMatches(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    yaml(),
    lintGutter(),
    linter(
      function (view) {
        var text = view.state.doc.toString();
        return options.check(text).then(function (findings) {
          var doc = view.state.doc;
          if (doc.toString() !== text) return [];
          return findings.map(function (f) {
            var where = range(doc, f);
            return { from: where.from, to: where.to, severity: f.severity, source: f.rule, message: f.message };
          });
        });
      },
      { delay: options.delay || 400 }
    ),
    autocompletion({ override: [completer(options.names || {})], activateOnTyping: true }),
    keymap.of([indentWithTab].concat(defaultKeymap, historyKeymap, searchKeymap, completionKeymap)),
    EditorView.lineWrapping,
    EditorState.readOnly.of(readOnly),
    EditorView.contentAttributes.of({ "aria-label": options.label || "File contents" }),
    EditorView.updateListener.of(function (update) {
      if (!update.docChanged) return;
      textarea.value = update.state.doc.toString();
      if (options.changed) options.changed(textarea.value);
    }),
  ];
  // The editor lives in a shadow root: CodeMirror's styles are then constructed style
  // sheets (adoptedStyleSheets), which the page's Content-Security-Policy (`style-src
  // 'self'`, no inline <style>) does not govern, so the policy stays as strict as it is.
  var host = document.createElement("div");
  host.id = "code-editor";
  host.className = "code-editor";
  var shadow = host.attachShadow({ mode: "open" });
  textarea.parentNode.insertBefore(host, textarea);
  textarea.hidden = true;
  var view = new EditorView({
    state: EditorState.create({ doc: textarea.value, extensions: extensions.concat(theme) }),
    root: shadow,
    parent: shadow,
  });
  return {
    view: view,
    // Replace the whole text (a draft restored, a discard), as one edit.
    setValue: function (text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    recheck: function () { forceLinting(view); },
    // Put the cursor at the start of a 1-based line, in view.
    goTo: function (number) {
      var line = view.state.doc.line(Math.min(Math.max(number, 1), view.state.doc.lines));
      view.dispatch({ selection: { anchor: line.from }, scrollIntoView: true });
      view.focus();
    },
    focus: function () { view.focus(); },
  };
}

window.MeltanoForgeEditor = { attach: attach };
