// A chosen file's header, read in the browser from the file's first bytes, for the upload form's
// column picker (columns.js): window.fileHeader.kindOf(file) says how the server will read the
// file (csv, jsonl or workbook), and window.fileHeader.header(file, kind, encoding) resolves to its
// column names (null when this browser cannot read it; an Error saying why the server would refuse
// the file).
//
// The header is read by the server's rules (webapp/upload/csv_reader.py): the first non-blank
// record, commas only (no other delimiter is guessed), RFC 4180 quotes, CR/LF/CRLF, a UTF-8 BOM
// dropped, in the encoding chosen on the form; a gzip file is inflated first. A .jsonl file's
// header is its first line's keys. An .xlsx workbook's header is inside its zip archive, which is
// not read here.
"use strict";

(function () {
  // The first MiB is plenty for any header; most are read from the first 64 KiB.
  const FIRST_BYTES = 64 * 1024;
  const MOST_BYTES = 1024 * 1024;
  const XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
  const DECODERS = {"utf-8": "utf-8", "cp1252": "windows-1252", "latin-1": "iso-8859-1"};

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

  function decoded(bytes, whole, name) {
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

  async function header(file, kind, encodingName) {
    for (const limit of [FIRST_BYTES, MOST_BYTES]) {
      const head = await firstBytes(file, limit);
      if (head === null) return null;
      if (head.bytes[0] === 0x50 && head.bytes[1] === 0x4b && head.bytes[2] === 0x03 && head.bytes[3] === 0x04) {
        throw new Error("This is a zip archive, not a CSV file (a workbook is read when its name ends in .xlsx).");
      }
      const text = decoded(head.bytes, head.whole, encodingName);
      if (text === null) return null;
      const names = kind === "jsonl" ? jsonlHeader(text, head.whole) : csvHeader(text, head.whole);
      if (names !== null || head.whole) return names;
    }
    throw new Error("The header does not end within the first MB of the file.");
  }

  window.fileHeader = {kindOf: kindOf, header: header};
})();
