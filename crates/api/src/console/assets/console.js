// voxbridge console: live updates. The server sends `call` events (a changed call's SID) on
// /console/events; the page re-reads itself and swaps each region marked data-live, so
// filters, pages and focus outside those regions stay as they are. No build step.
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-events");
  if (!url || !window.EventSource || !document.querySelector("[data-live]")) {
    return;
  }
  var onlyCall = body.getAttribute("data-call");
  var announcer = document.getElementById("live-announcer");
  var timer = null;

  function refresh() {
    timer = null;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.redirected || !response.ok) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var changed = false;
        document.querySelectorAll("[data-live]").forEach(function (region) {
          var next = fresh.getElementById(region.id);
          if (next && next.innerHTML !== region.innerHTML) {
            region.innerHTML = next.innerHTML;
            changed = true;
          }
        });
        if (changed && announcer) {
          announcer.textContent = "Updated " + new Date().toLocaleTimeString();
        }
        body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {
        // Signed out or offline: the next event or a reload tries again.
      });
  }

  function schedule() {
    if (timer === null) {
      timer = window.setTimeout(refresh, 200);
    }
  }

  var source = new EventSource(url);
  source.addEventListener("open", function () {
    body.setAttribute("data-stream", "open");
    // Whatever changed while the stream was (re)connecting.
    schedule();
  });
  source.addEventListener("error", function () {
    body.setAttribute("data-stream", "reconnecting");
  });
  source.addEventListener("call", function (event) {
    if (!onlyCall || event.data === onlyCall) {
      schedule();
    }
  });
  source.addEventListener("resync", schedule);
})();

// A chosen .csv file fills the textarea named by data-fill (the form posts the text: no
// upload encoding needed, and pasting works without this script).
(function () {
  "use strict";
  document.querySelectorAll("input[type=file][data-fill]").forEach(function (input) {
    input.addEventListener("change", function () {
      var target = document.getElementById(input.getAttribute("data-fill"));
      var file = input.files && input.files[0];
      if (!target || !file) {
        return;
      }
      file.text().then(function (text) {
        target.value = text;
        target.focus();
      });
    });
  });
})();
