// The token step of a survey whose reports spend a membership token: prove the right to
// one (a mailed code or a signed message for a verified work address, or an invite
// code), buy a blind-signed token with it (ChorusTokens, the bundled Privacy Pass client),
// keep the token in this browser until the report is sent, and put it in the report form.
// Texts come from data- attributes of #verify, in the page's language.
(function () {
  "use strict";
  var box = document.getElementById("verify");
  if (!box || !window.ChorusTokens) { return; }
  var form = document.querySelector("form.report");
  var field = document.getElementById("id_token");
  var status = box.querySelector(".verify-status");
  var email = document.getElementById("verify-email");
  var code = document.getElementById("verify-code");
  var invite = document.getElementById("verify-invite");
  var proof = document.getElementById("verify-proof");
  var key = "chorus-token:" + box.dataset.survey;
  box.querySelector(".verify-steps").hidden = false;

  function say(text, failed) {
    status.textContent = text;
    status.className = "verify-status" + (failed ? " failed" : "");
  }

  function fail(error) { say(box.dataset.failed + " " + error.message, true); }

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

  // What every way of proving has in common: a blinded request sent with the proof, the
  // blind signature finalized into the token.
  function buy(proofOf) {
    say(box.dataset.sending);
    return fetch(box.dataset.tokenKeyUrl, { credentials: "omit", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (issuer) {
        return window.ChorusTokens.request(issuer.token_key, issuer.challenge);
      })
      .then(function (pending) {
        proofOf.token_request = pending.tokenRequest;
        return post(box.dataset.tokensUrl, proofOf).then(function (issued) {
          return window.ChorusTokens.finalize(pending.state, issued.token_response);
        });
      })
      .then(function (token) {
        // Only the finished token is kept: the blinding state would tie it to the request.
        window.localStorage.setItem(key, token);
        [email, code, invite, proof].forEach(function (input) { if (input) { input.value = ""; } });
        ready(token);
      })
      .catch(fail);
  }

  function base64url(buffer) {
    var bytes = new Uint8Array(buffer), text = "";
    for (var i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return window.btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  var kept = window.localStorage.getItem(key);
  if (kept && !field.value) { ready(kept); }

  function on(step, handler) {
    var button = box.querySelector("[data-verify-step=" + step + "]");
    if (button) { button.addEventListener("click", handler); }
  }

  on("send", function () {
    say(box.dataset.sending);
    post(box.dataset.verificationUrl, { email: email.value })
      .then(function () { say(box.dataset.sent); code.focus(); })
      .catch(fail);
  });

  on("buy", function () { buy({ email: email.value, code: code.value.trim() }); });

  on("invite", function () { buy({ invite_code: invite.value.trim() }); });

  on("proof", function () {
    var file = proof.files && proof.files[0];
    if (!file) { say(box.dataset.noFile, true); return; }
    if (file.size > Number(box.dataset.proofMax)) { say(box.dataset.tooLarge, true); return; }
    file.arrayBuffer().then(function (buffer) { buy({ proof: base64url(buffer) }); }).catch(fail);
  });

  // Spent once the report is received: the receipt page forgets it (receipt.html).
  form.addEventListener("submit", function () {
    if (!field.value) { field.value = window.localStorage.getItem(key) || ""; }
  });
})();
