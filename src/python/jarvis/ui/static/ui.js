// Jarvis trail: the UI's only script. Live events (Server-Sent Events) and the verify progress bar.
// Everything from the server is set as text (textContent), never parsed as HTML.
"use strict";

function startLiveFeed(list) {
  const state = document.getElementById("live-state");
  const seen = new Set();
  const source = new EventSource(list.dataset.source);
  source.onopen = () => { state.textContent = "connected"; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  source.addEventListener("audit", (message) => {
    const event = JSON.parse(message.data);
    if (seen.has(event.row)) return;
    seen.add(event.row);
    const item = document.createElement("li");
    item.className = "fresh";
    item.dataset.kind = event.kind || "";
    item.dataset.row = event.row || "";
    const time = (event.at || "").slice(11, 23);
    item.textContent = [time, event.kind, event.name || "", event.status || ""].join("  ");
    list.prepend(item);
    while (list.children.length > 50) list.lastElementChild.remove();
  });
}

function followVerify(panel) {
  const bar = document.getElementById("verify-bar");
  const percent = document.getElementById("verify-percent");
  const result = document.getElementById("verify-result");
  const poll = () => {
    fetch(panel.dataset.progress, { credentials: "same-origin" })
      .then((response) => response.json())
      .then((job) => {
        bar.value = job.percent;
        percent.textContent = job.percent + "%";
        if (job.state === "running") { setTimeout(poll, 500); return; }
        result.textContent = job.summary || (job.error ? "could not verify: " + job.error : "");
        result.className = job.ok ? "good" : "bad";
        panel.dataset.state = job.state;
        document.querySelector("#verify-form button").disabled = false;
      })
      .catch(() => setTimeout(poll, 2000));
  };
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("live");
  if (list) startLiveFeed(list);
  const panel = document.getElementById("verify");
  if (panel && panel.dataset.state === "running") followVerify(panel);
});
