// Organizer tools: start a rebuild or a detection run through the API and follow its
// progress without reloading. Without JavaScript the forms still post to the API.
(function () {
  "use strict";
  var box = document.getElementById("jobs");
  if (!box) { return; }
  var panel = box.querySelector(".job");
  var bar = panel.querySelector("progress");
  var status = panel.querySelector(".job-status");
  var placeholder = "00000000-0000-0000-0000-000000000000";
  var busy = false;

  // The page's language: every text comes from a data- attribute of #jobs, with
  // "{job}", "{percent}" and "{reason}" filled in here.
  function say(name, values) {
    var text = box.dataset[name] || "";
    Object.keys(values).forEach(function (key) { text = text.split("{" + key + "}").join(values[key]); });
    return text.trim();
  }

  function show(text, state) {
    panel.hidden = false;
    status.textContent = text;
    status.className = "job-status" + (state ? " " + state : "");
  }

  function setButtons(disabled) {
    box.querySelectorAll("button").forEach(function (button) { button.disabled = disabled; });
  }

  function poll(url, label) {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (job) {
        var percent = Math.round((job.progress || 0) * 100);
        bar.value = percent;
        if (job.status === "succeeded") {
          show(say("done", { job: label }), "succeeded");
          busy = false; setButtons(false);
        } else if (job.status === "failed") {
          show(say("failed", { job: label, reason: job.error || say("tryAgain", {}) }), "failed");
          busy = false; setButtons(false);
        } else {
          show(job.status === "queued" ? say("queued", { job: label })
                                       : say("running", { job: label, percent: percent }));
          window.setTimeout(function () { poll(url, label); }, 1000);
        }
      })
      .catch(function () {
        show(say("lost", { job: label }), "failed");
        busy = false; setButtons(false);
      });
  }

  box.querySelectorAll("form.job-start").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) { return; }
      busy = true; setButtons(true);
      var label = form.dataset.label;
      var token = form.querySelector("input[name=csrfmiddlewaretoken]").value;
      bar.value = 0;
      show(say("starting", { job: label }));
      fetch(form.action, {
        method: "POST", credentials: "same-origin",
        headers: { "X-CSRFToken": token, "Content-Type": "application/json", Accept: "application/json" },
        body: "{}"
      })
        .then(function (response) {
          if (response.status === 202) { return response.json(); }
          // A refusal says why (for detection: nothing is published yet).
          return response.json().catch(function () { return {}; }).then(function (body) {
            var reason = body && (Array.isArray(body.detail) ? body.detail.join(" ") : body.detail);
            throw new Error(typeof reason === "string" ? reason : "");
          });
        })
        .then(function (job) { poll(box.dataset.jobsUrl.replace(placeholder, job.id), label); })
        .catch(function (error) {
          var reason = error && error.message;
          show(say("refused", { job: label, reason: reason || "" }), "failed");
          busy = false; setButtons(false);
        });
    });
  });
})();
