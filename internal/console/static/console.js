// Herald console: polls the events stream and posts the send-event form
// without leaving the page. Everything it inserts is HTML the server
// rendered and escaped.
(function () {
  "use strict";

  document.documentElement.setAttribute("data-console", "ready");
  var pollMS = parseInt(document.body.getAttribute("data-poll-ms"), 10) || 2000;

  function toLogin(resp) {
    if (resp.redirected && new URL(resp.url).pathname === "/login") {
      window.location.assign("/login");
      return true;
    }
    return false;
  }

  // Every element with data-src (the events stream, an event's runs while
  // they may change) is refreshed from that URL every pollMS.
  var live = Array.prototype.slice.call(document.querySelectorAll("[data-src]"));
  var polling = false;
  function refresh(el) {
    return fetch(el.getAttribute("data-src"), { credentials: "same-origin", headers: { "X-Herald-Partial": "poll" } })
      .then(function (resp) {
        if (toLogin(resp) || !resp.ok) {
          return null;
        }
        return resp.text();
      })
      .then(function (html) {
        if (html !== null && el.innerHTML !== html) {
          el.innerHTML = html;
        }
      })
      .catch(function () {});
  }
  function poll() {
    if (polling || document.hidden || live.length === 0) {
      return;
    }
    polling = true;
    Promise.all(live.map(refresh)).then(function () { polling = false; });
  }
  if (live.length > 0) {
    window.setInterval(poll, pollMS);
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    // getAttribute: the form's fields named "id" shadow form.id.
    if (!form || form.getAttribute("id") !== "send-form" || !window.fetch) {
      return;
    }
    ev.preventDefault();
    var body = new URLSearchParams(new FormData(form));
    var button = form.querySelector("button[type=submit]");
    if (button) {
      button.disabled = true;
    }
    fetch(form.getAttribute("action"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-Herald-Partial": "send", "Content-Type": "application/x-www-form-urlencoded" },
      body: body
    }).then(function (resp) {
      if (toLogin(resp)) {
        return null;
      }
      return resp.text();
    }).then(function (html) {
      if (html === null) {
        return;
      }
      var holder = document.getElementById("send");
      if (holder) {
        holder.innerHTML = html;
      }
      poll();
    }).catch(function () {
      if (button) {
        button.disabled = false;
      }
    });
  });
})();
