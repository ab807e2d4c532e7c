// The triage queue, live: every "alert" event on /api/alerts/stream re-reads the queue's
// rows (/queue/rows, server-rendered) and merges them into the table in place.  A row the
// nurse is working in (focus inside, a field typed in, "More actions" open) keeps its
// actions as they are; a row that left the queue while she was working in it stays,
// marked, until she is done.  Nothing is re-rendered wholesale, so nothing typed is lost.
"use strict";

(function () {
  const table = document.getElementById("alerts");
  if (!table) return;
  const tbody = table.tBodies[0];
  const live = document.getElementById("live");
  const announce = document.getElementById("queue-status");
  const rowsUrl = table.dataset.rowsUrl;

  function busy(row) {
    const actions = row.querySelector('[data-col="actions"]');
    if (!actions) return false;
    if (actions.contains(document.activeElement)) return true;
    if (actions.querySelector("details[open]")) return true;
    for (const el of actions.querySelectorAll("input, select, textarea")) {
      if (el instanceof HTMLSelectElement) {
        const chosen = el.options[el.selectedIndex];
        if (chosen && !chosen.defaultSelected && el.selectedIndex !== 0) return true;
      } else if (el.value !== el.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function update(row, fresh) {
    for (const cell of fresh.querySelectorAll("td[data-col]")) {
      const col = cell.dataset.col;
      const mine = row.querySelector(`td[data-col="${col}"]`);
      if (!mine) continue;
      if (col === "actions") {
        if (row.dataset.state === fresh.dataset.state) continue;
        if (!busy(row)) {
          mine.replaceWith(document.importNode(cell, true));
        } else {  // keep her forms; only the acknowledge button's words follow the state
          const button = mine.querySelector("button.primary");
          const label = cell.querySelector("button.primary");
          if (button && label) button.innerHTML = label.innerHTML;
        }
      } else if (mine.innerHTML !== cell.innerHTML) {
        mine.innerHTML = cell.innerHTML;
      }
    }
    row.className = fresh.className;
    row.dataset.state = fresh.dataset.state;
    row.dataset.version = fresh.dataset.version;
  }

  function markGone(row) {
    row.classList.add("gone");
    const state = row.querySelector('[data-col="state"]');
    if (state && !state.querySelector(".gone-note")) {
      const note = document.createElement("span");
      note.className = "sub gone-note";
      note.textContent = "no longer in the queue";
      state.append(note);
    }
  }

  function merge(doc) {
    const active = document.activeElement;
    const selection = active && "selectionStart" in active
      ? [active.selectionStart, active.selectionEnd] : null;
    const existing = new Map();
    for (const row of tbody.querySelectorAll("tr[data-alert-id]")) {
      existing.set(row.dataset.alertId, row);
    }
    const order = [];
    let added = 0;
    for (const fresh of doc.querySelectorAll("#rows > tr")) {
      const id = fresh.dataset.alertId;
      if (!id) continue;
      const row = existing.get(id);
      if (row) {
        update(row, fresh);
        row.classList.remove("gone");
        existing.delete(id);
        order.push(row);
      } else {
        order.push(document.importNode(fresh, true));
        added += 1;
      }
    }
    for (const row of existing.values()) {
      if (busy(row)) { markGone(row); order.push(row); } else { row.remove(); }
    }
    for (const row of tbody.querySelectorAll("tr:not([data-alert-id])")) row.remove();
    order.forEach((row, i) => {
      if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null);
    });
    if (order.length === 0) {
      const empty = doc.querySelector("#rows > tr.empty");
      if (empty) tbody.append(document.importNode(empty, true));
    }
    const counts = doc.getElementById("counts");
    const mine = document.getElementById("counts");
    if (counts && mine && counts.innerHTML !== mine.innerHTML) mine.innerHTML = counts.innerHTML;
    if (active && active !== document.activeElement && document.contains(active)) {
      active.focus({preventScroll: true});
      if (selection) active.setSelectionRange(selection[0], selection[1]);
    }
    if (added && announce) {
      announce.textContent = added === 1 ? "A new alert is in the queue." :
        `${added} new alerts are in the queue.`;
    }
    if (window.homewardTimes) window.homewardTimes.refresh();
  }

  let running = false;
  let again = false;
  let timer = null;

  async function refresh() {
    if (running) { again = true; return; }
    running = true;
    try {
      const res = await fetch(rowsUrl, {credentials: "same-origin",
                                        headers: {"Accept": "text/html"}});
      if (res.redirected || res.status === 401) { window.location.assign("/login"); return; }
      if (!res.ok) { live.textContent = "refresh failed (" + res.status + ")"; return; }
      merge(new DOMParser().parseFromString(await res.text(), "text/html"));
    } catch (err) {
      live.textContent = "refresh failed";
    } finally {
      running = false;
      if (again) { again = false; schedule(); }
    }
  }

  function schedule(delay = 150) {
    clearTimeout(timer);
    timer = setTimeout(refresh, delay);
  }

  let opened = false;
  const source = new EventSource("/api/alerts/stream");
  source.onopen = () => {
    live.textContent = "live";
    if (opened) schedule();  // a reconnection: events may have been missed
    opened = true;
  };
  source.onerror = () => { live.textContent = "reconnecting…"; };
  source.addEventListener("alert", () => schedule());
  table.addEventListener("api:done", () => schedule(0));
})();
