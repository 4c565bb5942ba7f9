// The upload form's column picker. Once a file is chosen, its header is read here from the file's
// first bytes, and the column to score and the id column are chosen from it. The picker follows
// the file in the form, and the server reads form fields only before the file part, so the
// choices travel as query parameters on the form's action (text_column, id_column, sheet).
// Without this script the form's own text fields, before the file, name the columns.
//
// The header is read by the server's rules (webapp/upload/csv_reader.py): the first non-blank
// record, commas only (no other delimiter is guessed), RFC 4180 quotes, CR/LF/CRLF, a UTF-8 BOM
// dropped, in the encoding chosen above; a gzip file is inflated first. A .jsonl file's header is
// its first line's keys. An .xlsx workbook's header is inside its zip archive, which is not read
// here: the picker asks for the sheet and the columns' names instead.
"use strict";

(function () {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("file");
  const typed = document.getElementById("column-names");
  const picker = document.getElementById("column-picker");
  const encoding = document.getElementById("encoding");
  if (!form || !input || !typed || !picker) return;

  const found = document.getElementById("columns-found");
  const sheetField = document.getElementById("sheet-field");
  const sheet = document.getElementById("pick-sheet");
  const columns = {
    text: {select: document.getElementById("pick-text"), typed: document.getElementById("type-text"),
           label: document.getElementById("pick-text-label")},
    id: {select: document.getElementById("pick-id"), typed: document.getElementById("type-id"),
         label: document.getElementById("pick-id-label")},
  };
  // What the page came with (a refused upload's choices), then the fields without script go:
  // their values would reach the server too, before the file.
  const wanted = {
    text: typed.querySelector("[name=text_column]").value.trim(),
    id: typed.querySelector("[name=id_column]").value.trim(),
    sheet: typed.querySelector("[name=sheet]").value.trim(),
  };
  typed.remove();
  const action = form.getAttribute("action");

  // The first MiB is plenty for any header; most are read from the first 64 KiB.
  const FIRST_BYTES = 64 * 1024;
  const MOST_BYTES = 1024 * 1024;
  const XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
  const DECODERS = {"utf-8": "utf-8", "cp1252": "windows-1252", "latin-1": "iso-8859-1"};
  let reading = 0;  // the latest read: an older one finishing late is dropped

  function kindOf(file) {
    const name = file.name.toLowerCase();
    if (name.endsWith(".xlsx") || file.type === XLSX_TYPE) return "workbook";
    if (name.endsWith(".jsonl") || name.endsWith(".jsonl.gz")) return "jsonl";
    return "csv";
  }

  async function inflated(file, limit) {
    // The whole file's stream, cancelled once enough is inflated: a gzip file's first bytes
    // alone would end in a truncated stream, which DecompressionStream reports as an error.
    if (typeof DecompressionStream !== "function") return null;
    const reader = file.stream().pipeThrough(new DecompressionStream("gzip")).getReader();
    const parts = [];
    let size = 0;
    try {
      while (size < limit) {
        const step = await reader.read();
        if (step.done) break;
        parts.push(step.value);
        size += step.value.length;
      }
    } catch (error) {
      if (size === 0) return null;  // not gzip after all: the server will say so
    } finally {
      reader.cancel().catch(function () {});
    }
    const bytes = new Uint8Array(size);
    let at = 0;
    parts.forEach(function (part) { bytes.set(part, at); at += part.length; });
    return {bytes: bytes, whole: size < limit};
  }

  async function firstBytes(file, limit) {
    const bytes = new Uint8Array(await file.slice(0, limit).arrayBuffer());
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) return inflated(file, limit);
    return {bytes: bytes, whole: file.size <= limit};
  }

  function decoded(bytes, whole) {
    const name = encoding ? encoding.value : "utf-8";
    if (name === "utf-8" && ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff))) {
      throw new Error("The file is UTF-16; save it as CSV UTF-8, or choose its encoding above.");
    }
    let decoder;
    try {
      decoder = new TextDecoder(DECODERS[name] || name, {fatal: true});
    } catch (error) {
      return null;
    }
    try {
      // Streaming: a character cut at the end of the slice is not an error (the header ends before).
      return decoder.decode(bytes, {stream: !whole});
    } catch (error) {
      throw new Error("The start of the file is not valid " + name.toUpperCase() +
                      ": choose the file's encoding above (Windows-1252 for older Excel files).");
    }
  }

  // The first non-blank record, as Python's csv module reads it (excel dialect, strict): null if
  // the text ends inside it and more of the file is to come.
  function csvHeader(text, whole) {
    let at = 0;
    while (text[at] === "\r" || text[at] === "\n") at += 1;
    if (at >= text.length) {
      if (whole) throw new Error("The file is empty: it has no header row.");
      return null;
    }
    const fields = [];
    let field = "";
    let state = "start";  // start, plain, quoted, quote (a quote inside a quoted field)
    for (; at < text.length; at += 1) {
      const c = text[at];
      const end = c === "\r" || c === "\n";
      if (state === "quoted") {
        if (c === "\"") state = "quote";
        else field += c;
      } else if (state === "quote") {
        if (c === "\"") { field += c; state = "quoted"; }
        else if (c === "," || end) {
          fields.push(field); field = ""; state = "start";
          if (end) return fields;
        } else {
          throw new Error("Line 1: a quoted column name is followed by other characters (',' expected after '\"').");
        }
      } else if (c === ",") {
        fields.push(field); field = ""; state = "start";
      } else if (end) {
        fields.push(field);
        return fields;
      } else if (state === "start" && c === "\"") {
        state = "quoted";
      } else {
        field += c;
        state = "plain";
      }
    }
    if (!whole) return null;
    if (state === "quoted") throw new Error("Line 1: a quoted column name is never closed.");
    fields.push(field);
    return fields;
  }

  function jsonlHeader(text, whole) {
    const lines = text.split("\n");
    const complete = whole ? lines : lines.slice(0, -1);
    const line = complete.find(function (each) { return each.trim() !== ""; });
    if (line === undefined) {
      if (whole) throw new Error("The file is empty.");
      return null;
    }
    let value;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new Error("The first line is not a JSON object.");
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new Error("The first line is not a JSON object.");
    }
    return Object.keys(value);
  }

  async function header(file, kind) {
    for (const limit of [FIRST_BYTES, MOST_BYTES]) {
      const head = await firstBytes(file, limit);
      if (head === null) return null;
      if (head.bytes[0] === 0x50 && head.bytes[1] === 0x4b && head.bytes[2] === 0x03 && head.bytes[3] === 0x04) {
        throw new Error("This is a zip archive, not a CSV file (a workbook is read when its name ends in .xlsx).");
      }
      const text = decoded(head.bytes, head.whole);
      if (text === null) return null;
      const names = kind === "jsonl" ? jsonlHeader(text, head.whole) : csvHeader(text, head.whole);
      if (names !== null || head.whole) return names;
    }
    throw new Error("The header does not end within the first MB of the file.");
  }

  function option(value, text) {
    const element = document.createElement("option");
    element.value = value;
    element.textContent = text;  // names from the file are text, never markup
    return element;
  }

  function show(which, useSelect) {
    const column = columns[which];
    column.select.hidden = !useSelect;
    column.typed.hidden = useSelect;
    column.label.htmlFor = useSelect ? column.select.id : column.typed.id;
  }

  function typedNames(message) {
    columns.id.select.setCustomValidity("");  // the lists are hidden: nothing of theirs may block the form
    ["text", "id"].forEach(function (which) {
      show(which, false);
      columns[which].typed.value = wanted[which];
    });
    found.textContent = message;
  }

  function matching(names, name) {
    const lower = name.toLowerCase();
    return names.findIndex(function (each) { return each.trim().toLowerCase() === lower; });
  }

  function fill(names) {
    const named = names.filter(function (name) { return name.trim() !== ""; });
    const notes = [];
    const seen = new Set();
    named.forEach(function (name) {
      const key = name.trim().toLowerCase();
      if (seen.has(key)) notes.push("The column '" + name.trim() + "' appears twice: the service refuses such a file.");
      seen.add(key);
    });
    if (names.length === 1 && /[;\t|]/.test(names[0])) {
      notes.push("This header has no commas. The service reads comma-separated files only: save the file " +
                 "as CSV with commas (in Excel: CSV UTF-8).");
    }
    const text = columns.text.select;
    const id = columns.id.select;
    text.replaceChildren(option("", "Choose the column to score"));
    id.replaceChildren();
    // Preselected: the names asked for before (a refused upload's, or this page's last choice),
    // else 'text' and 'id', as the server takes them when none are named.
    const preferred = function (name, fallback) {
      const index = name ? matching(named, name) : -1;
      return index >= 0 ? index : matching(named, fallback);
    };
    const pickText = preferred(wanted.text, "text");
    const pickId = preferred(wanted.id, "id");
    // Without a column named id the server numbers the rows; with one, it takes it unless another is named.
    if (matching(named, "id") < 0) id.append(option("", "None: each row's line number"));
    named.forEach(function (name) {
      text.append(option(name.trim(), name));
      id.append(option(name.trim(), name));
    });
    text.selectedIndex = pickText + 1;  // 0: "Choose", when nothing matches
    if (pickId >= 0) id.value = named[pickId].trim();
    show("text", true);
    show("id", true);
    found.textContent = "Its header names " + named.length + (named.length === 1 ? " column" : " columns") +
      "." + (notes.length ? " " + notes.join(" ") : "");
    checkDistinct();
  }

  function checkDistinct() {
    const same = !columns.id.select.hidden && columns.id.select.value !== "" &&
      columns.id.select.value.toLowerCase() === columns.text.select.value.toLowerCase();
    columns.id.select.setCustomValidity(same ? "The id and the text must be different columns." : "");
  }

  async function chosen() {
    const file = input.files && input.files[0];
    const mine = ++reading;
    columns.text.select.required = false;
    if (!file) {
      picker.hidden = true;
      return;
    }
    const kind = kindOf(file);
    picker.hidden = false;
    sheetField.hidden = kind !== "workbook";
    if (kind === "workbook") {
      sheet.value = wanted.sheet;
      typedNames("A workbook's header is its sheet's first row, which is read once it is uploaded: " +
                 "type the names of the text and id columns, or leave them blank for text and id.");
      return;
    }
    found.textContent = "Reading the file's header…";
    // The last file's columns are not this one's: until this header is read, nothing is chosen.
    columns.text.select.replaceChildren();
    columns.id.select.replaceChildren();
    columns.id.select.setCustomValidity("");
    let names;
    try {
      names = await header(file, kind);
    } catch (error) {
      if (mine === reading) typedNames(error.message + " You can still type the columns' names.");
      return;
    }
    if (mine !== reading) return;
    if (names === null) {
      typedNames("This browser cannot read the file's header: type the columns' names, or leave them " +
                 "blank for text and id.");
      return;
    }
    fill(names);
    columns.text.select.required = true;
  }

  input.addEventListener("change", chosen);
  if (encoding) encoding.addEventListener("change", chosen);
  columns.text.select.addEventListener("change", function () { wanted.text = columns.text.select.value; checkDistinct(); });
  columns.id.select.addEventListener("change", function () { wanted.id = columns.id.select.value; checkDistinct(); });

  // The choices, as the action's query string; read when the form is submitted.
  form.addEventListener("submit", function () {
    const params = new URLSearchParams();
    const file = input.files && input.files[0];
    if (file && !picker.hidden) {
      ["text", "id"].forEach(function (which) {
        const column = columns[which];
        const value = (column.select.hidden ? column.typed.value : column.select.value).trim();
        if (value) params.set(which + "_column", value);
      });
      if (!sheetField.hidden && sheet.value.trim()) params.set("sheet", sheet.value.trim());
    }
    const query = params.toString();
    form.setAttribute("action", query ? action + "?" + query : action);
  }, true);
  if (input.files && input.files.length) chosen();  // a file kept by the browser on Back
})();
