// Keeps "3 h ago" texts current in an open page: every <time data-rel="ago"> is re-worded
// from its datetime attribute every 30 s, with the words of server/api/humantime.py (ago).
"use strict";

(function () {
  function ago(at, now) {
    const seconds = (now - at) / 1000;
    const future = seconds < 0;
    const span = Math.abs(seconds);
    if (span < 45) return future ? "in under a minute" : "just now";
    let amount;
    if (span < 3600) {
      amount = `${Math.max(1, Math.round(span / 60))} min`;
    } else if (span < 86400) {
      amount = `${Math.floor(span / 3600)} h`;
      const minutes = Math.floor((span % 3600) / 60);
      if (span < 6 * 3600 && minutes) amount += ` ${minutes} min`;
    } else {
      amount = `${Math.floor(span / 86400)} d`;
    }
    return future ? `in ${amount}` : `${amount} ago`;
  }

  function refresh() {
    const now = Date.now();
    for (const el of document.querySelectorAll('time[data-rel="ago"]')) {
      const at = Date.parse(el.getAttribute("datetime"));
      if (!Number.isNaN(at)) {
        const text = ago(at, now);
        if (el.textContent !== text) el.textContent = text;
      }
    }
  }

  window.homewardTimes = {refresh, ago};
  setInterval(refresh, 30000);
})();
