// Follows a running batch for its page (shown by batch_view.js). First by its event stream,
// GET /batch/<id>/events, read with EventSource: `progress` events carry the batch as
// GET /batch/<id> shows it, `rows` events the rows of each chunk as it is scored (each with an
// id that a reconnection sends back, so no row comes twice), and `end` the final batch. The
// browser reconnects by itself after a dropped connection; a stream refused outright is tried
// again a few times. Where EventSource is missing, or the stream keeps failing, the page polls
// the JSON status (and this page of results) once a second instead; the histogram then fills
// in when the batch is final.
"use strict";

(function () {
  const root = document.getElementById("progress");
  const view = window.BatchView;
  if (!root || !view || root.dataset.status !== "processing") return;

  const POLL_MS = 1000;
  const TRIES = 3; // refused streams in a row before polling instead
  let lastId = null;
  let failures = 0;
  let over = false;

  function heard() {
    failures = 0;
    view.problem(null);
  }

  function lost(reason) {
    view.problem("Lost touch with the server (" + reason + "); still trying…");
  }

  function follow() {
    const url = root.dataset.eventsUrl + (lastId ? "?last_event_id=" + encodeURIComponent(lastId) : "");
    const source = new EventSource(url);
    source.addEventListener("progress", function (event) {
      heard();
      view.progress(JSON.parse(event.data));
    });
    source.addEventListener("rows", function (event) {
      heard();
      if (event.lastEventId) lastId = event.lastEventId;
      view.rows(JSON.parse(event.data).rows);
    });
    source.addEventListener("end", function (event) {
      over = true;
      source.close();
      view.finish(JSON.parse(event.data));
    });
    source.addEventListener("error", function () {
      if (over) return;
      failures += 1;
      if (source.readyState !== EventSource.CLOSED) {
        // The browser reconnects by itself, sending the last id it saw.
        if (failures > 1) lost("the stream dropped");
        return;
      }
      source.close(); // refused (an error status, or not an event stream)
      if (failures >= TRIES) {
        poll();
        return;
      }
      setTimeout(follow, POLL_MS * failures);
    });
  }

  let rowsSeen = -1;

  async function pollResults(batch) {
    // This page's rows, whenever the count of scored rows has changed since the last look.
    const count = batch.processed_count + batch.failed_count;
    if (!view.live || count === rowsSeen) return;
    const table = document.getElementById("results-table");
    const perPage = Number(table.dataset.perPage);
    const page = Math.floor(Number(table.dataset.after) / perPage) + 1;
    const url = root.dataset.resultsUrl + "?page=" + page + "&per_page=" + perPage;
    const answer = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!answer.ok) return; // a server that shows no rows before the end: the bar alone then
    rowsSeen = count;
    view.rows((await answer.json()).results, { tableOnly: true });
  }

  async function poll() {
    try {
      const answer = await fetch(root.dataset.statusUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!answer.ok) throw new Error("the server answered " + answer.status);
      const batch = await answer.json();
      heard();
      if (batch.status !== "processing") {
        view.finish(batch);
        return;
      }
      view.progress(batch);
      await pollResults(batch);
    } catch (error) {
      failures += 1;
      lost(error.message);
    }
    // Back off while the server is unreachable, up to ten seconds between tries.
    setTimeout(poll, Math.min(POLL_MS * 2 ** Math.min(failures, 4), 10000));
  }

  if (typeof window.EventSource === "function") follow();
  else setTimeout(poll, POLL_MS);
})();
