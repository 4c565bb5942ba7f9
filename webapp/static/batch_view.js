// What a running batch's page shows as it goes, whichever way the news comes (batch.js: the
// event stream, or polling): the progress bar and figures, the rows of this page of results,
// the histogram of compound scores, and what is said to screen readers (progress now and then,
// the finish once). When the batch is final, the page's sections are fetched once more and put
// in place of the live ones, so the chart, filters and pagers are the server's, with no reload.
// Everything from the user's file is set with textContent or attributes, never as HTML.
"use strict";

window.BatchView = (function () {
  const root = document.getElementById("progress");
  const bar = document.getElementById("progress-bar");
  const fill = document.getElementById("bar-fill");
  const announcer = document.getElementById("announce");
  const shown = {
    done: document.getElementById("done"),
    percent: document.getElementById("percent"),
    rate: document.getElementById("rate"),
    timeLeft: document.getElementById("time-left"),
    status: document.getElementById("status"),
    problem: document.getElementById("poll-problem"),
  };
  const table = document.querySelector("#results-table[data-live]");
  const figure = document.querySelector("#histogram figure");
  const BINS = 20;
  const RATE_WINDOW_MS = 10000; // the speed shown is over the last ten seconds
  const samples = [];
  const counts = figure ? figure.dataset.counts.split(",").map(Number) : [];
  let announcedTenth = -1;
  let finished = false;
  let drawPending = false;
  let total = 0; // results so far: rows scored or failed

  function number(n) {
    return Math.round(n).toLocaleString("en-US");
  }

  function duration(seconds) {
    const whole = Math.round(seconds);
    if (whole < 1) return "under a second";
    if (whole < 60) return whole + " s";
    const minutes = Math.floor(whole / 60);
    const secs = whole % 60;
    if (minutes < 60) return secs ? minutes + " min " + secs + " s" : minutes + " min";
    const hours = Math.floor(minutes / 60);
    const mins = minutes % 60;
    return mins ? hours + " h " + mins + " min" : hours + " h";
  }

  function rowsPerSecond(now, done) {
    samples.push({ at: now, done: done });
    while (samples.length > 2 && now - samples[0].at > RATE_WINDOW_MS) samples.shift();
    const first = samples[0];
    const seconds = (now - first.at) / 1000;
    if (seconds < 0.5 || done <= first.done) {
      const average = parseFloat(root.dataset.rate);
      return isNaN(average) ? null : average;
    }
    return (done - first.done) / seconds;
  }

  function announce(text) {
    announcer.textContent = text;
  }

  function progress(batch) {
    const done = batch.processed_count + batch.invalid_count + batch.failed_count;
    const percent = batch.progress_percent.toFixed(1);
    fill.setAttribute("width", percent + "%");
    bar.setAttribute("aria-valuenow", String(percent));
    const words = number(done) + " of " + number(batch.total_count) + " rows (" + percent + "%)";
    bar.setAttribute("aria-valuetext", words);
    shown.done.textContent = number(done);
    shown.percent.textContent = percent + "%";
    const rate = rowsPerSecond(performance.now(), done);
    shown.rate.textContent = rate ? number(rate) + " rows/s" : "—";
    if (shown.timeLeft) {
      shown.timeLeft.textContent = rate ? duration((batch.total_count - done) / rate) : "—";
    }
    shown.status.textContent = batch.status.replace(/_/g, " ");
    total = batch.processed_count + batch.failed_count;
    if (table) showPlace();
    // Progress is said politely, at each tenth of the way; the finish is said by finish().
    const tenth = Math.floor(batch.progress_percent / 10);
    if (batch.status === "processing" && tenth > announcedTenth && tenth < 10) {
      if (announcedTenth >= 0 || tenth > 0) announce(percent + "% done: " + words.replace(/ \(.*/, "") + ".");
      announcedTenth = tenth;
    }
  }

  function problem(text) {
    shown.problem.textContent = text || "";
    shown.problem.hidden = !text;
  }

  // The histogram: a score's bin from its four decimals as an integer, as the server bins it.
  function binOf(compound) {
    return Math.min(BINS - 1, Math.floor((Math.round(compound * 10000) + 10000) / 1000));
  }

  function drawHistogram() {
    drawPending = false;
    const fullest = Math.max.apply(null, counts);
    figure.querySelectorAll("rect[data-bin]").forEach(function (rect) {
      const height = fullest ? (100 * counts[Number(rect.dataset.bin)]) / fullest : 0;
      rect.setAttribute("y", (100 - height).toFixed(2));
      rect.setAttribute("height", height.toFixed(2));
    });
    figure.querySelectorAll("li[data-bin] .bin-count").forEach(function (cell, bin) {
      cell.textContent = number(counts[bin]);
    });
    document.getElementById("histogram-rows").textContent = number(counts.reduce((a, b) => a + b, 0));
  }

  function cell(label, text, className) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (className) td.className = className;
    if (text !== null) td.textContent = text;
    return td;
  }

  function rowElement(row) {
    const tr = document.createElement("tr");
    tr.dataset.row = String(row.row);
    tr.append(cell("Row", String(row.row), "num"), cell("id", row.id, "id"), cell("Text", row.text, "text"));
    const label = document.createElement("span");
    const sentiment = cell("Sentiment", null);
    if (row.sentiment) {
      label.className = "sentiment sentiment-" + row.sentiment;
      label.textContent = row.sentiment;
    } else {
      label.className = "sentiment sentiment-failed";
      label.textContent = "failed";
      if (row.error) label.setAttribute("title", row.error);
    }
    sentiment.append(label);
    const signed = row.compound === null ? "—" : (row.compound < 0 ? "-" : "+") + Math.abs(row.compound).toFixed(4);
    tr.append(sentiment, cell("Compound", signed, "num"));
    return tr;
  }

  // This page's rows: the first per_page rows scored after the page's start, in file order.
  function placeRow(row) {
    const after = Number(table.dataset.after);
    const perPage = Number(table.dataset.perPage);
    if (row.row <= after) return;
    const body = table.tBodies[0];
    let before = null;
    for (const tr of body.rows) {
      const at = Number(tr.dataset.row);
      if (at === row.row) return;
      if (at > row.row) {
        before = tr;
        break;
      }
    }
    if (!before && body.rows.length >= perPage) return;
    body.insertBefore(rowElement(row), before);
    if (body.rows.length > perPage) body.deleteRow(-1);
  }

  // The pagers of a live page: which rows of how many so far, and links by page number.
  function showPlace() {
    const perPage = Number(table.dataset.perPage);
    const page = Math.floor(Number(table.dataset.after) / perPage) + 1;
    const pages = Math.max(1, Math.ceil(total / perPage));
    const count = table.tBodies[0].rows.length;
    const first = (page - 1) * perPage + 1;
    document.querySelectorAll("#results [data-pager]").forEach(function (pager) {
      const place = pager.querySelector(".pager-place");
      place.textContent = count
        ? "Rows " + number(first) + "–" + number(first + count - 1) + " of " + number(total)
        : number(total) + " rows";
      place.textContent += " · page " + number(page) + " of " + number(pages);
      const links = pager.querySelector(".pager-links");
      links.replaceChildren();
      const wanted = [["« First", 1, page > 1], ["← Previous", page - 1, page > 1, "prev"],
        ["Next →", page + 1, page < pages, "next"], ["Last »", pages, page < pages]];
      wanted.forEach(function (link) {
        if (!link[2]) return;
        const a = document.createElement("a");
        const url = new URL(window.location.href);
        url.searchParams.set("page", String(link[1]));
        url.hash = "results";
        a.href = url.pathname + url.search + url.hash;
        a.textContent = link[0];
        if (link[3]) a.rel = link[3];
        const item = document.createElement("li");
        item.append(a);
        links.append(item);
      });
    });
  }

  // Rows as they are scored; `tableOnly` for rows that are this page's and no more (polling).
  function rows(list, options) {
    if (figure && !(options && options.tableOnly)) {
      list.forEach(function (row) {
        if (row.compound !== null && row.compound !== undefined) counts[binOf(row.compound)] += 1;
      });
      if (!drawPending) {
        drawPending = true;
        window.requestAnimationFrame(drawHistogram);
      }
    }
    if (!table) return;
    list.forEach(placeRow);
    if (table.tBodies[0].rows.length) {
      table.parentElement.hidden = false;
      const none = document.getElementById("no-results");
      if (none) none.hidden = true;
    }
    showPlace();
  }

  // The page as the server now shows it: its sections replace the live ones.
  async function showFinal() {
    const answer = await fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
    if (!answer.ok) throw new Error("the server answered " + answer.status);
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const main = document.querySelector("main");
    main.querySelectorAll(":scope > section").forEach((section) => section.remove());
    page.querySelectorAll("main > section").forEach((section) => main.append(document.adoptNode(section)));
  }

  function finish(batch) {
    if (finished) return;
    finished = true;
    progress(batch);
    const scored = number(batch.processed_count) + " row" + (batch.processed_count === 1 ? "" : "s") + " scored";
    announce("Finished: the batch is " + batch.status.replace(/_/g, " ") + ", " + scored + ".");
    showFinal().catch(function () {
      window.location.reload();
    });
  }

  return { progress: progress, rows: rows, finish: finish, problem: problem, live: Boolean(table) };
})();
