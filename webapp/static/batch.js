// The live progress bar of a running batch: polls the JSON status once a second
// and updates the bar, the counts, the speed and the time left. When the batch
// is no longer processing, the page reloads to show the chart and the results.
// Everything shown is set with textContent or attributes, never as HTML.
"use strict";

(function () {
  const root = document.getElementById("progress");
  if (!root || root.dataset.status !== "processing") return;

  const statusUrl = root.dataset.statusUrl;
  const bar = document.getElementById("progress-bar");
  const fill = document.getElementById("bar-fill");
  const shown = {
    done: document.getElementById("done"),
    percent: document.getElementById("percent"),
    rate: document.getElementById("rate"),
    timeLeft: document.getElementById("time-left"),
    status: document.getElementById("status"),
    problem: document.getElementById("poll-problem"),
  };
  const POLL_MS = 1000;
  const RATE_WINDOW_MS = 10000; // the speed shown is over the last ten seconds
  const samples = [];
  let failures = 0;

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

  function show(batch) {
    const total = batch.total_count;
    const done = batch.processed_count + batch.invalid_count + batch.failed_count;
    const percent = batch.progress_percent.toFixed(1);
    fill.setAttribute("width", percent + "%");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.setAttribute("aria-valuetext", number(done) + " of " + number(total) + " rows (" + percent + "%)");
    shown.done.textContent = number(done);
    shown.percent.textContent = percent + "%";
    const rate = rowsPerSecond(performance.now(), done);
    shown.rate.textContent = rate ? number(rate) + " rows/s" : "—";
    if (shown.timeLeft) shown.timeLeft.textContent = rate ? duration((total - done) / rate) : "—";
    shown.status.textContent = batch.status.replace(/_/g, " ");
  }

  async function poll() {
    try {
      const answer = await fetch(statusUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!answer.ok) throw new Error("the server answered " + answer.status);
      const batch = await answer.json();
      failures = 0;
      shown.problem.hidden = true;
      show(batch);
      if (batch.status !== "processing") {
        // Finished: the page itself shows the chart and the results.
        window.location.reload();
        return;
      }
    } catch (error) {
      failures += 1;
      shown.problem.textContent = "Lost touch with the server (" + error.message + "); still trying…";
      shown.problem.hidden = false;
    }
    // Back off while the server is unreachable, up to ten seconds between tries.
    setTimeout(poll, Math.min(POLL_MS * 2 ** Math.min(failures, 4), 10000));
  }

  setTimeout(poll, POLL_MS);
})();
