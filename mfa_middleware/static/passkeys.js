// Passkeys (WebAuthn) on the gate's pages: ask the gate for options, run the browser's prompt, post the answer.
// No inline script (the pages' CSP forbids it) and no library: the only work here is base64url <-> bytes,
// since the gate speaks JSON and the browser's API speaks ArrayBuffers. Every check happens on the server.
(function () {
  "use strict";

  function toBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer), raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    var field = document.querySelector("input[name=csrf_token]");
    return field ? field.value : "";
  }

  // The messages come from the page, in its language (templates/mfa_passkey_status.html).
  function text(name, fallback) {
    var box = document.querySelector("[data-passkey-status]");
    return (box && box.getAttribute("data-msg-" + name)) || fallback;
  }

  function say(message) {
    var box = document.querySelector("[data-passkey-status]");
    if (!box) return;
    box.textContent = message;
    box.hidden = !message;
  }

  // POST form fields (the gate's CSRF check reads the form), answer JSON.
  function post(url, fields) {
    var body = new URLSearchParams();
    body.append("csrf_token", csrfToken());
    Object.keys(fields).forEach(function (name) { body.append(name, fields[name]); });
    return fetch(url, {method: "POST", body: body, credentials: "same-origin",
                       headers: {"Accept": "application/json"}}).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (data.redirect && (response.ok || response.status === 409)) {
          window.location.assign(data.redirect);
          return null;
        }
        if (!response.ok) throw new Error(data.message || text("failed", "Something went wrong. Please try again."));
        return data;
      });
    });
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return {type: d.type, id: toBytes(d.id), transports: d.transports};
    });
  }

  function creationOptions(o) {
    o.challenge = toBytes(o.challenge);
    o.user.id = toBytes(o.user.id);
    o.excludeCredentials = descriptors(o.excludeCredentials);
    return o;
  }

  function requestOptions(o) {
    o.challenge = toBytes(o.challenge);
    o.allowCredentials = descriptors(o.allowCredentials);
    return o;
  }

  function credentialJSON(credential) {
    var r = credential.response, response = {clientDataJSON: toText(r.clientDataJSON)};
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      if (r.getTransports) response.transports = r.getTransports();
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) response.userHandle = toText(r.userHandle);
    }
    return JSON.stringify({id: credential.id, rawId: toText(credential.rawId), type: credential.type,
                           response: response, authenticatorAttachment: credential.authenticatorAttachment,
                           clientExtensionResults: credential.getClientExtensionResults()});
  }

  function failed(error) {
    if (error && error.name === "NotAllowedError") {
      say(text("cancelled", "The passkey prompt was cancelled or timed out. Please try again."));
    } else if (error && error.name === "InvalidStateError") {
      say(text("registered", "This passkey is already registered."));
    } else {
      say(error && error.message ? error.message : text("failed", "Something went wrong. Please try again."));
    }
  }

  function supported() {
    if (window.PublicKeyCredential && navigator.credentials) return true;
    say(text("unsupported", "This browser cannot use passkeys here."));
    return false;
  }

  var add = document.querySelector("form[data-passkey-add]");
  if (add) {
    add.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!supported()) return;
      say("");
      var name = add.querySelector("input[name=name]").value;
      post(add.action, {name: name}).then(function (data) {
        if (!data) return null;
        return navigator.credentials.create({publicKey: creationOptions(data.publicKey)});
      }).then(function (credential) {
        if (!credential) return null;
        return post(add.getAttribute("data-register-url"), {credential: credentialJSON(credential)});
      }).catch(failed);
    });
  }

  var login = document.querySelector("[data-passkey-login]");
  if (login) {
    login.addEventListener("click", function () {
      if (!supported()) return;
      say("");
      var next = login.getAttribute("data-next") || "";
      post(login.getAttribute("data-options-url"), {next: next}).then(function (data) {
        if (!data) return null;
        return navigator.credentials.get({publicKey: requestOptions(data.publicKey)});
      }).then(function (credential) {
        if (!credential) return null;
        var remember = document.querySelector("input[name=remember]");
        return post(login.getAttribute("data-url"), {credential: credentialJSON(credential), next: next,
                                                     remember: remember && remember.checked ? "1" : ""});
      }).catch(failed);
    });
  }
})();
