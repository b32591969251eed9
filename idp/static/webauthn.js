// Security keys and passkeys: registration and sign-in through navigator.credentials.
//
// Loaded as a file (the Content Security Policy allows no inline script). Each element with a
// data-webauthn attribute ("register" or "authenticate") is one ceremony: its button asks the
// server for options (POST data-options), hands them to the browser, and posts the browser's
// answer to data-verify; the server replies with where to go next. The CSRF token travels in
// the X-CSRFToken header.
(function () {
  "use strict";

  function b64urlToBuffer(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) base64 += "=";
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function bufferToB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: b64urlToBuffer(item.id) });
    });
  }

  // Browsers before Chromium 129 / Firefox 119 lack the JSON helpers: decode by hand.
  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: b64urlToBuffer(json.challenge),
      user: Object.assign({}, json.user, { id: b64urlToBuffer(json.user.id) }),
      excludeCredentials: withIds(json.excludeCredentials),
    });
  }

  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: b64urlToBuffer(json.challenge),
      allowCredentials: withIds(json.allowCredentials),
    });
  }

  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    var r = credential.response;
    var response = { clientDataJSON: bufferToB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = bufferToB64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = bufferToB64url(r.authenticatorData);
      response.signature = bufferToB64url(r.signature);
      if (r.userHandle) response.userHandle = bufferToB64url(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: bufferToB64url(credential.rawId),
      type: credential.type,
      response: response,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || null,
    };
  }

  function post(url, csrf, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrf,
      },
      body: JSON.stringify(body || {}),
    }).then(function (response) {
      return response.json().then(
        function (data) { return { ok: response.ok, data: data }; },
        function () { return { ok: false, data: { error: "The server gave an unexpected answer." } }; }
      );
    });
  }

  function browserMessage(error, mode) {
    if (error && error.name === "NotAllowedError") {
      return "The security key did not answer, or the request was cancelled. Try again.";
    }
    if (error && error.name === "InvalidStateError" && mode === "register") {
      return "This security key is already registered to your account.";
    }
    if (error && error.name === "SecurityError") {
      return "This browser refused the request for this site's address.";
    }
    return "Something went wrong with the security key. Try again.";
  }

  function setup(box) {
    var mode = box.getAttribute("data-webauthn");
    var button = box.querySelector("[data-webauthn-start]");
    var status = box.querySelector("[data-webauthn-status]");
    var nameInput = box.querySelector("[data-webauthn-name]");
    var csrf = box.getAttribute("data-csrf");

    function say(text, isError) {
      status.textContent = text;
      status.className = isError ? "alert" : "hint";
      status.hidden = !text;
    }

    if (!window.PublicKeyCredential || !navigator.credentials) {
      say("This browser cannot use security keys or passkeys.", true);
      button.disabled = true;
      return;
    }

    button.addEventListener("click", function () {
      button.disabled = true;
      say(mode === "register"
        ? "Follow your browser's prompt: touch or unlock your security key."
        : "Follow your browser's prompt to use your security key or passkey.", false);
      post(box.getAttribute("data-options"), csrf, {})
        .then(function (answer) {
          if (!answer.ok) throw { server: answer.data };
          var publicKey = mode === "register"
            ? creationOptions(answer.data.publicKey)
            : requestOptions(answer.data.publicKey);
          return mode === "register"
            ? navigator.credentials.create({ publicKey: publicKey })
            : navigator.credentials.get({ publicKey: publicKey });
        })
        .then(function (credential) {
          var body = { credential: credentialJSON(credential) };
          if (nameInput) body.name = nameInput.value;
          if (box.getAttribute("data-next")) body.next = box.getAttribute("data-next");
          return post(box.getAttribute("data-verify"), csrf, body);
        })
        .then(function (answer) {
          if (!answer.ok) throw { server: answer.data };
          say(mode === "register" ? "Registered. One moment…" : "Verified. One moment…", false);
          window.location.assign(answer.data.redirect);
        })
        .catch(function (error) {
          button.disabled = false;
          if (error && error.server) {
            say(error.server.error || "That did not work. Try again.", true);
            if (error.server.redirect) window.location.assign(error.server.redirect);
          } else {
            say(browserMessage(error, mode), true);
          }
        });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("[data-webauthn]");
    for (var i = 0; i < boxes.length; i++) setup(boxes[i]);
  });
})();
