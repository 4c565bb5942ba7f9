// The upload form's column picker. Once a file is chosen, its header is read here from the file's
// first bytes, and the column to score and the id column are chosen from it. The picker follows
// the file in the form, and the server reads form fields only before the file part, so the
// choices travel as query parameters on the form's action (text_column, id_column, sheet).
// Without this script the form's own text fields, before the file, name the columns.
//
// The header is read by file_header.js (loaded before this script). An .xlsx workbook's header is
// inside its zip archive, which is not read in the browser: the picker asks for the sheet and the
// columns' names instead.
"use strict";

(function () {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("file");
  const typed = document.getElementById("column-names");
  const picker = document.getElementById("column-picker");
  const encoding = document.getElementById("encoding");
  if (!form || !input || !typed || !picker || !window.fileHeader) return;

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

  const kindOf = window.fileHeader.kindOf;
  let reading = 0;  // the latest read: an older one finishing late is dropped

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
      names = await window.fileHeader.header(file, kind, encoding ? encoding.value : "utf-8");
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
