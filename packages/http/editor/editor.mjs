// The playground's editor: CodeMirror 6 with one highlighter per Corral language, exposed to
// play.js as the global CorralEditor (build.sh bundles this file into corral_http/web/editor.js).
import { EditorState, Compartment } from "@codemirror/state";
import { EditorView, keymap, lineNumbers, highlightActiveLine, drawSelection } from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { syntaxHighlighting, defaultHighlightStyle, indentOnInput, bracketMatching, StreamLanguage } from "@codemirror/language";
import { python } from "@codemirror/lang-python";
import { cpp } from "@codemirror/lang-cpp";
import { javascript } from "@codemirror/lang-javascript";
import { java } from "@codemirror/lang-java";
import { go } from "@codemirror/lang-go";
import { rust } from "@codemirror/lang-rust";
import { shell } from "@codemirror/legacy-modes/mode/shell";

// Keyed by the runtime's language name (GET /runtimes); an unknown one gets no highlighting.
const LANGUAGES = {
  python: python,
  "python-sci": python,
  c: cpp,
  cpp: cpp,
  javascript: javascript,
  java: java,
  go: go,
  rust: rust,
  bash: () => StreamLanguage.define(shell),
};

function highlighter(language) {
  const make = LANGUAGES[language];
  return make ? make() : [];
}

// The page's look for the editor: inside its shadow root, the page's stylesheet does not reach it.
const look = EditorView.theme({
  "&": { minHeight: "12rem", backgroundColor: "#fff" },
  ".cm-scroller": { fontFamily: "ui-monospace, monospace", minHeight: "12rem" },
});

// The editor lives in a shadow root of `parent`: there CodeMirror adds its styles as a
// constructed stylesheet, which the page's CSP (style-src 'self', no 'unsafe-inline') allows;
// in the document itself it would add a <style> element, which that policy blocks.
export function create(parent, doc, language, onChange) {
  const mode = new Compartment();
  const root = parent.attachShadow({ mode: "open" });
  const view = new EditorView({
    root,
    parent: root,
    state: EditorState.create({
      doc,
      extensions: [
        lineNumbers(),
        history(),
        drawSelection(),
        highlightActiveLine(),
        indentOnInput(),
        bracketMatching(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
        EditorView.contentAttributes.of({ "aria-label": "code" }),
        look,
        mode.of(highlighter(language)),
        EditorView.updateListener.of((update) => {
          if (update.docChanged && onChange) onChange();
        }),
      ],
    }),
  });
  return {
    view,
    getValue: () => view.state.doc.toString(),
    setValue: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
    setLanguage: (name) => view.dispatch({ effects: mode.reconfigure(highlighter(name)) }),
  };
}
