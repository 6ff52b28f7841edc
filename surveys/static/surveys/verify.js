// A verified survey's token step: mail a code, buy a blind-signed membership token with
// it (ChorusTokens, the bundled Privacy Pass client), keep the token in this browser
// until the report is sent, and put it in the report form. Texts come from data-
// attributes of #verify, in the page's language.
(function () {
  "use strict";
  var box = document.getElementById("verify");
  if (!box || !window.ChorusTokens) { return; }
  var form = document.querySelector("form.report");
  var field = document.getElementById("id_token");
  var status = box.querySelector(".verify-status");
  var email = document.getElementById("verify-email");
  var code = document.getElementById("verify-code");
  var key = "chorus-token:" + box.dataset.survey;
  box.querySelector(".verify-steps").hidden = false;

  function say(text, failed) {
    status.textContent = text;
    status.className = "verify-status" + (failed ? " failed" : "");
  }

  function reason(body) {
    if (!body || typeof body !== "object") { return ""; }
    return Object.keys(body).map(function (name) {
      var value = body[name];
      return Array.isArray(value) ? value.join(" ") : String(value);
    }).join(" ");
  }

  function post(url, payload) {
    return fetch(url, {
      method: "POST", credentials: "omit",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(payload)
    }).then(function (response) {
      if (response.ok) { return response.status === 202 ? {} : response.json(); }
      return response.json().catch(function () { return {}; }).then(function (body) {
        throw new Error(reason(body));
      });
    });
  }

  function ready(token) {
    field.value = token;
    say(box.dataset.ready);
  }

  var kept = window.localStorage.getItem(key);
  if (kept && !field.value) { ready(kept); }

  box.querySelector("[data-verify-step=send]").addEventListener("click", function () {
    say(box.dataset.sending);
    post(box.dataset.verificationUrl, { email: email.value })
      .then(function () { say(box.dataset.sent); code.focus(); })
      .catch(function (error) { say(box.dataset.failed + " " + error.message, true); });
  });

  box.querySelector("[data-verify-step=buy]").addEventListener("click", function () {
    say(box.dataset.sending);
    fetch(box.dataset.tokenKeyUrl, { credentials: "omit", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (issuer) {
        return window.ChorusTokens.request(issuer.token_key, issuer.challenge);
      })
      .then(function (pending) {
        return post(box.dataset.tokensUrl, {
          email: email.value, code: code.value.trim(), token_request: pending.tokenRequest
        }).then(function (issued) {
          return window.ChorusTokens.finalize(pending.state, issued.token_response);
        });
      })
      .then(function (token) {
        // Only the finished token is kept: the blinding state would tie it to the request.
        window.localStorage.setItem(key, token);
        email.value = ""; code.value = "";
        ready(token);
      })
      .catch(function (error) { say(box.dataset.failed + " " + error.message, true); });
  });

  // Spent once the report is received: the receipt page forgets it (receipt.html).
  form.addEventListener("submit", function () {
    if (!field.value) { field.value = window.localStorage.getItem(key) || ""; }
  });
})();
